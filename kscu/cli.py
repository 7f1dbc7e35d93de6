"""Command line: the same code path as the UI and the Python API.

    python -m kscu quick-erase --concept striped --out runs/quick-striped
    python -m kscu influence --concept striped --out runs/influence
    python -m kscu unlearn   --concept striped --out runs/striped
    python -m kscu unlearn   --concept striped --method esd --out runs/striped-esd
    python -m kscu unlearn   --concepts striped,red --schedule interleaved --out runs/two   (several concepts, one job)
    python -m kscu evaluate  --edit runs/striped --json
    python -m kscu compare   --edit runs/striped --edit runs/striped-esd --grid compare.png
    python -m kscu evaluate  --edit runs/striped --family sd1 --judge assets/shape-clip --neighbours plain,dotted,checkered,outlined
    python -m kscu attack    --edit runs/striped --attack embedding --json
    python -m kscu sweep     --concepts striped,star --seeds 0,1,2 --methods kscu,esd --out sweeps/vs-esd [--ray]
    python -m kscu export    --edit runs/striped --out runs/striped-pipeline
    python -m kscu export    --edit runs/striped --single-file runs/striped.safetensors
    python -m kscu export    --edit runs/striped --lora --rank 8 --out runs/striped-lora
    python -m kscu evaluate  --edit their-esd-edit.safetensors --concept striped   (LoRAs and UNet tensors made elsewhere)
    python -m kscu generate  --prompt "a striped red star on a dark background" --edit runs/striped --out star.png
    python -m kscu runs list | show ID | compare A B | delete ID   (unlearn, evaluate, compare, attack and quick-erase record runs)

--model defaults to the embedded demo model; it also takes a diffusers folder, a single SD1.x
.safetensors file or a hub id; --family sd1 treats any model as a generic SD1.x one, --judge
names the judge (a CLIP folder or hub id, or nudenet). The kind of a concept is the model
domain's guess unless --kind says. Errors print one line that says what to do and exit with 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


from kscu.attack_config import ATTACKS, budget_fields  # noqa: E402  (no torch: --help stays fast)
from kscu.config import DEFAULT_SCHEDULE, SCHEDULES  # noqa: E402
from kscu.export_formats import DEFAULT_RANK, LAYOUTS  # noqa: E402
from kscu.stats import ERASE_PROMPTS, RETAIN_PROMPTS  # noqa: E402

if TYPE_CHECKING:
    from kscu.evaluation import Verdict


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="demo (default), a diffusers folder, an SD1.x .safetensors file or a hub id")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--allow-pickle", action="store_true", help="allow .ckpt/.bin pickle checkpoints (they can run code: only for files you trust)")
    parser.add_argument("--family", choices=("demo", "sd1"), default=None,
                        help="domain of the model (default: demo for a demo model folder, else sd1)")
    parser.add_argument("--judge", default=None, help="judge of the images: a CLIP folder or hub id (e.g. openai/clip-vit-large-patch14) "
                        "or nudenet (default: the demo model's classifier; none on sd1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kscu", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    influence = commands.add_parser("influence", help="per-step concept influence curves and a suggested key-step window")
    _add_model_args(influence)
    influence.add_argument("--concept", action="append", required=True, help="concept to analyse (repeat to overlay several)")
    influence.add_argument("--kind", default=None, help=KIND_HELP)
    influence.add_argument("--steps", type=_positive_int, default=25, help="DDIM steps of the analysed schedule")
    influence.add_argument("--seeds", type=_positive_int, default=4, help="seeds averaged per curve")
    influence.add_argument("--measures", default="gap,causal", help="comma list of gap, causal")
    influence.add_argument("--anchor", default=None, help="neutral prompt to compare against (default: empty or the sentence without the concept)")
    _add_neighbours_arg(influence)
    influence.add_argument("--out", type=Path, default=Path("runs/influence"), help="folder for influence.png and influence.json")

    unlearn = commands.add_parser("unlearn", help="erase a concept with KSCU (or the ESD baseline)")
    _add_model_args(unlearn)
    _add_config_args(unlearn)
    unlearn.add_argument("--out", type=Path, required=True, help="folder (edit.safetensors + run.json) or a .safetensors file")
    unlearn.add_argument("--force", action="store_true", help="replace an existing edit at --out, or write inside a model folder")
    _add_record_args(unlearn)

    evaluate = commands.add_parser("evaluate", help="UA / IRA / CRA of an edit next to the unedited model (demo model)")
    _add_model_args(evaluate)
    evaluate.add_argument("--edit", type=Path, default=None, help="edit folder or .safetensors, a LoRA, or a file of UNet tensors made "
                          "elsewhere (default: only the base model)")
    evaluate.add_argument("--concept", default=None, help="the concept to measure (default: each concept the edit erased); for an "
                          "edit made outside the workbench what it erased, a comma list if several")
    evaluate.add_argument("--kind", default=None, help="default: the edit's kind, else " + KIND_HELP)
    _add_neighbours_arg(evaluate)
    evaluate.add_argument("--n-erase", type=_positive_int, default=ERASE_PROMPTS)
    evaluate.add_argument("--n-retain", type=_positive_int, default=RETAIN_PROMPTS)
    evaluate.add_argument("--steps", type=_positive_int, default=25)
    evaluate.add_argument("--guidance", type=float, default=3.0)
    evaluate.add_argument("--seed", type=int, default=1234)
    evaluate.add_argument("--grid", type=Path, default=None, help="also save a before/after image grid here (PNG)")
    _add_record_args(evaluate)

    quick = commands.add_parser("quick-erase", help="erase a concept with its preset, then grids, metrics and a verdict")
    _add_model_args(quick)
    quick.add_argument("--concept", default=None, help="the concept to erase")
    quick.add_argument("--also", default=None, help=_field_help("also"))
    _add_concepts_arg(quick)
    quick.add_argument("--schedule", default=DEFAULT_SCHEDULE, choices=SCHEDULES, help=_field_help("schedule"))
    quick.add_argument("--kind", default=None, help=KIND_HELP)
    quick.add_argument("--iterations", type=_positive_int, default=None, help="default: the preset's")
    quick.add_argument("--robust", action="store_true", help=_field_help("robust"))
    quick.add_argument("--adversarial", action="store_true", help=_field_help("adversarial"))
    quick.add_argument("--n-erase", type=_positive_int, default=ERASE_PROMPTS, help="test prompts that name the concept")
    quick.add_argument("--n-retain", type=_positive_int, default=RETAIN_PROMPTS, help="test prompts of its neighbours")
    quick.add_argument("--out", type=Path, default=None, help="save the edit here too (folder or .safetensors)")
    quick.add_argument("--force", action="store_true", help="replace an existing edit at --out")
    quick.add_argument("--grid", type=Path, default=None, help="save the before/after grids here (PNG)")
    _add_record_args(quick)

    compare = commands.add_parser("compare", help="several edits of one concept against the unedited model, same seeds")
    _add_model_args(compare)
    compare.add_argument("--edit", type=Path, action="append", required=True, help="an edit folder or file (repeat for several)")
    _add_foreign_concept_arg(compare)
    _add_neighbours_arg(compare)
    compare.add_argument("--seeds", default="0,1,2,3", help="comma list of seeds (grid columns)")
    compare.add_argument("--no-measure", action="store_true", help="grids and image change only, no UA / IRA / CRA")
    compare.add_argument("--n-erase", type=_positive_int, default=ERASE_PROMPTS)
    compare.add_argument("--n-retain", type=_positive_int, default=RETAIN_PROMPTS)
    compare.add_argument("--grid", type=Path, default=None, help="save every edit's before/after grids here (PNG)")
    _add_record_args(compare)

    attack = commands.add_parser("attack", help="red team: try to bring an erased concept back; attack success rate before and after")
    _add_model_args(attack)
    attack.add_argument("--edit", type=Path, action="append", required=True, help="an edit folder or file (repeat for several)")
    _add_foreign_concept_arg(attack)
    attack.add_argument("--target", default=None, help="which erased concept to attack when an edit erased several (default: "
                        "its first); every --edit must have erased it")
    attack.add_argument("--attack", choices=ATTACKS, default="embedding",
                        help="embedding: learned prompt tokens (white box); rephrase: other wordings; soft: a free offset on the conditioning (upper bound)")
    for name, default, text in budget_fields():  # the budget's fields; checked by AttackBudget.check
        attack.add_argument(f"--{name}", type=type(default), default=default, help=f"{text} (default {default})")
    attack.add_argument("--grid", type=Path, default=None, help="save plain and attacked images per model here (PNG)")
    _add_record_args(attack)

    sweep = commands.add_parser("sweep", help="concepts x seeds x methods x windows: an unlearning run per cell, scored; "
                                "one table and plot, resumable, on Ray if asked")
    _add_model_args(sweep)
    sweep.add_argument("--concepts", required=True, help="comma list of concepts, e.g. striped,star,red")
    sweep.add_argument("--seeds", default="0", help="comma list of training seeds (default 0)")
    sweep.add_argument("--methods", default=None, help="comma list of kscu, esd (default kscu, unless --setting alone is given)")
    sweep.add_argument("--windows", default=None, help="comma list of key-step windows START-END (steps [START, END)) or preset "
                       "(default preset), crossed with --methods")
    sweep.add_argument("--setting", action="append", default=None, help="a further setting NAME:field=value:field=value "
                       "(unlearning fields, e.g. wide:trajectories=4:lr=3e-4; repeat for several)")
    sweep.add_argument("--iterations", type=_positive_int, default=None, help="iterations of every run (default: each preset's)")
    sweep.add_argument("--num-steps", type=_positive_int, default=50, help="DDIM steps of the training schedule (default 50)")
    sweep.add_argument("--n-erase", type=_positive_int, default=ERASE_PROMPTS, help=f"erase-set prompts per cell (default {ERASE_PROMPTS})")
    sweep.add_argument("--n-retain", type=_positive_int, default=RETAIN_PROMPTS, help=f"retain-set prompts per cell (default {RETAIN_PROMPTS})")
    sweep.add_argument("--eval-steps", type=_positive_int, default=25, help="DDIM steps of the evaluation images (default 25)")
    sweep.add_argument("--quick-eval", type=int, default=0, help="prompts per set of a second, smaller verdict per cell (default 0: none)")
    sweep.add_argument("--ua-goal", type=float, default=0.95, help="a cell meets the goal with UA at least this (default 0.95) ...")
    sweep.add_argument("--max-drop", type=float, default=0.05, help="... and IRA and every CRA down at most this (default 0.05)")
    sweep.add_argument("--threads", type=_positive_int, default=2, help="torch CPU threads per cell (default 2)")
    sweep.add_argument("--ray", action="store_true", help="run the cells as Ray tasks on a local Ray (pip install ray)")
    sweep.add_argument("--address", default=None, help="run them on the Ray cluster at this address (implies --ray)")
    sweep.add_argument("--workers", type=_positive_int, default=None, help="concurrent cells on the local Ray (default: cores / --threads)")
    sweep.add_argument("--out", type=Path, required=True, help="folder of the store (finished cells are not run again), "
                       "sweep.json and sweep.png")

    export = commands.add_parser("export", help="the edited model as a diffusers folder, one SD1.x checkpoint file, or a LoRA")
    _add_model_args(export)
    export.add_argument("--edit", type=Path, required=True)
    _add_foreign_concept_arg(export)
    export.add_argument("--out", type=Path, default=None,
                        help="the diffusers pipeline folder; with --lora a folder (both layouts) or a .safetensors file")
    form = export.add_mutually_exclusive_group()
    form.add_argument("--single-file", type=Path, default=None, metavar="FILE.safetensors",
                      help="one original-layout SD1.x checkpoint (A1111, ComfyUI, diffusers' from_single_file) instead of a folder")
    form.add_argument("--lora", action="store_true", help="a low-rank approximation of the edit as a LoRA (diffusers/peft and kohya layouts)")
    export.add_argument("--rank", type=_positive_int, default=None, help=f"LoRA rank (default {DEFAULT_RANK})")
    export.add_argument("--layout", choices=(*LAYOUTS, "both"), default="both",
                        help="LoRA layout: diffusers (load_lora_weights), kohya (A1111, ComfyUI) or both (a folder --out)")
    export.add_argument("--half", action="store_true", help="store the single file in float16 (half the size)")
    export.add_argument("--force", action="store_true", help="replace an earlier export at the output path")

    generate = commands.add_parser("generate", help="images for a prompt, with or without an edit")
    _add_model_args(generate)
    generate.add_argument("--prompt", required=True)
    generate.add_argument("--edit", type=Path, default=None)
    _add_foreign_concept_arg(generate)
    generate.add_argument("--seeds", default="0,1,2,3", help="comma list of seeds")
    generate.add_argument("--steps", type=_positive_int, default=25)
    generate.add_argument("--guidance", type=float, default=3.0)
    generate.add_argument("--out", type=Path, required=True, help="PNG file (a grid, one image per seed)")

    history = commands.add_parser("runs", help="the run history: list, show, compare or delete recorded runs")
    actions = history.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every recorded run, newest first")
    show = actions.add_parser("show", help="one run: what ran, its metrics, settings and thumbnail")
    show.add_argument("id", help="a run id (or the start of one) from runs list")
    both = actions.add_parser("compare", help="two runs of one model: each metric and its change, the settings that differ")
    both.add_argument("a", help="run id A")
    both.add_argument("b", help="run id B (the change is B - A)")
    delete = actions.add_parser("delete", help="remove a run from the history (asks first)")
    delete.add_argument("id", help="a run id from runs list")
    delete.add_argument("--yes", action="store_true", help="delete without asking")
    for action in (listing, show, both, delete):
        action.add_argument("--runs", type=Path, default=None, help=RUNS_HELP)
        action.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return parser


RUNS_HELP = "the run history's folder (default: $KSCU_RUNS, else runs/)"


def _add_record_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=Path, default=None, help=f"record this run in {RUNS_HELP.removeprefix('the ')}")
    parser.add_argument("--no-record", action="store_true", help="do not record this run in the run history")


def _field_help(name: str) -> str:
    """The help of an UnlearnConfig field (one text for every flag that sets it)."""
    from kscu.config import UnlearnConfig

    return UnlearnConfig.__dataclass_fields__[name].metadata["help"]


KIND_HELP = _field_help("kind")


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    """One flag per UnlearnConfig field (--start-step for start_step; a true-by-default switch as
    --no-augment), its help from the field: values stay text until kscu.config.from_inputs."""
    from dataclasses import MISSING

    from kscu.config import config_fields

    for name, base, default, meta in config_fields():
        flag = "--" + name.replace("_", "-")
        if base is bool:  # a switch that turns the default around
            switch = f"--no-{name.replace('_', '-')}" if default else flag
            parser.add_argument(switch, dest=name, action="store_const", const=not default, default=None,
                                help=f"turn off: {meta['help']}" if default else meta["help"])
            continue
        shown = "" if default is MISSING or default is None or default == () else f" (default {default})"
        parser.add_argument(flag, dest=name, default=None, choices=meta.get("choices"), help=meta["help"] + shown)
    _add_concepts_arg(parser)


def _add_concepts_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concepts", default=None, help="several concepts erased in one job, comma list, e.g. striped,red "
                        "(the same as --concept striped --also red)")


def _concept_inputs(args) -> dict:
    """The command's flags as from_inputs wants them, --concepts split into concept and also."""
    values = dict(vars(args))
    if args.concepts is not None:
        if args.concept is not None or getattr(args, "also", None) is not None:
            raise ValueError("give --concepts alone, or --concept (with --also): not both")
        first, *rest = _list_arg(args.concepts) or [""]
        values.update(concept=first, also=",".join(rest))
    return values


def _add_foreign_concept_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concept", default=None, help="what an edit made outside the workbench erased (a LoRA or a file of UNet "
                        "tensors says nothing about it; a comma list if several); ignored for the workbench's own edits")


def _add_neighbours_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--neighbours", default=None, help="comma list of concepts that must survive (default: the domain's, "
                        "e.g. the other styles)")


def _list_arg(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text is not None else None


def _positive_int(text: str) -> int:
    """argparse type for counts: a whole number of at least 1 (argparse names the flag)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is too small: give at least 1")
    return value


def _load(args):
    from kscu.models import load_model

    return load_model(args.model, device=args.device, allow_pickle=args.allow_pickle, family=args.family, judge=args.judge)


def _edited_unet(args, model):
    """The edit named by --edit applied to a copy of the model's UNet (None without --edit)."""
    if args.edit is None:
        return None, None
    edit = _open_edit(args.edit, model, getattr(args, "concept", None), getattr(args, "kind", None))
    return edit, edit.apply(model)


def _open_edit(path: Path, model, concept: str | None = None, kind: str | None = None):
    """The edit file or folder at `path` (ours or foreign), with a warning when it was made for another model."""
    from kscu.export import check_compatible
    from kscu.importing import open_edit

    edit = open_edit(path, model, concept, kind)
    warning = check_compatible(edit, model)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return edit


def _print(args, payload: dict, text: str) -> None:
    print(json.dumps(payload) if args.json else text)


def _record(args, payload: dict, result, model, **details) -> None:
    """Record the run in the history (kscu.runs.record_run) unless --no-record: its id goes into the
    JSON payload and, as a note, to stderr. A history that cannot be written costs a warning, not the run."""
    if args.no_record:
        return
    from kscu.runs import record_run

    try:
        record = record_run(args.runs, result, model, **details)
    except OSError as error:
        print(f"warning: the run was not recorded in the history ({error}); --runs DIR picks another folder", file=sys.stderr)
        return
    payload["run"] = record.id
    print(f"run recorded: {record.id} (python -m kscu runs show {record.id})", file=sys.stderr)


def cmd_influence(args) -> int:
    from kscu.influence import analyze
    from kscu.plots import influence_figure

    model = _load(args)
    measures = tuple(m.strip() for m in args.measures.split(",") if m.strip())
    reports = []
    for concept in args.concept:
        with _bar(f"influence of {concept!r}", 100, args.json) as bar:
            reports.append(analyze(model, concept, kind=args.kind, measures=measures, num_steps=args.steps, seeds=args.seeds,
                                   anchor=args.anchor, neighbours=_list_arg(args.neighbours), on_progress=_fraction_progress(bar)))
    args.out.mkdir(parents=True, exist_ok=True)
    figure = influence_figure(reports)
    figure.savefig(args.out / "influence.png", dpi=120)
    payload = {"reports": [r.to_dict() for r in reports], "figure": str(args.out / "influence.png")}
    (args.out / "influence.json").write_text(json.dumps(payload, indent=2))
    lines = [f"{r.concept}: suggested key-step window starts at step {r.suggested_start} of {r.num_steps} (paper preset for {r.kind}: {r.paper_start})" for r in reports]
    _print(args, payload, "\n".join(lines + [f"figure: {args.out / 'influence.png'}"]))
    return 0


def cmd_unlearn(args) -> int:
    import warnings

    from kscu.config import from_inputs
    from kscu.export import check_edit_output, save_edit_or_keep
    from kscu.trainer import unlearn
    from kscu.validation import ConfigWarning, check_config, validate

    config = from_inputs(_concept_inputs(args))
    validate(config)  # settings and output path first: a mistake costs no model loading and no training
    check_edit_output(args.out, overwrite=args.force)
    model = _load(args)
    checked = check_config(config, model)
    for warning in checked.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    resolved = checked.config
    names = ", ".join(repr(part.concept) for part in checked.parts)
    with _bar(f"{resolved.method} {names}", sum(part.iterations for part in checked.parts), args.json) as bar:
        def progress(p) -> None:
            bar.update(1)
            bar.set_postfix(step=p.step_index, loss=f"{p.loss:.4g}")

        def preparing(update) -> None:
            bar.set_postfix_str(f"{update.message} {update.fraction:.0%}")

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConfigWarning)  # printed above
            result = unlearn(model, checked, on_progress=progress, on_setup=preparing)
    saved = save_edit_or_keep(result, args.out, overwrite=args.force)
    sanity = result.sanity
    payload = {"edit": str(saved.path), "saved_where_asked": saved.failure is None, "config": result.config.to_dict(),
               "concepts": [part.to_dict() for part in result.configs],
               "seconds": round(result.seconds, 1), "final_loss": result.losses[-1], "unet_forwards": result.unet_forwards,
               "warnings": result.warnings, "sanity": sanity.to_dict() if sanity is not None else None}
    done = "erased" if sanity is None or sanity.passed else "trained (but see the sanity check)"
    windows = "; ".join(f"{part.concept}: {part.iterations} iterations, steps {part.start_step}..{part.end_step - 1} of {part.num_steps}"
                        for part in result.configs)  # a robust run's windows are measured during unlearn
    order = f", {resolved.schedule.replace('_', ' ')}" if resolved.also else ""
    lines = [f"{done} {names} with {resolved.method} in {result.seconds:.1f}s ({windows}{order}); edit saved to {saved.path}"]
    if sanity is not None:
        lines.append(sanity.message)
    _record(args, payload, result, model, edit_path=saved.path)
    _print(args, payload, "\n".join(lines))
    if sanity is not None and not sanity.passed:
        print(f"warning: {sanity.message}", file=sys.stderr)
    if saved.failure is not None:
        print(f"error: {saved.failure}; the trained edit is kept at {saved.path}: move it where you want it", file=sys.stderr)
        return 1
    return 0


def cmd_evaluate(args) -> int:
    from kscu.evaluation import evaluate_each, format_table, verdict
    from kscu.config import IMPORTED

    model = _load(args)
    edit, edited = _edited_unet(args, model)
    if args.concept is None and edit is None:
        raise ValueError("give --edit or --concept: there is nothing to evaluate")
    erased = [(c.concept, c.kind) for c in edit.configs] if edit is not None else []
    names = [c for c, _ in erased]
    if args.concept is not None and (edit is None or edit.config.method != IMPORTED):
        # that one concept (for an imported edit --concept said what it erased: all are measured);
        # if the edit erased it, its other concepts are kept out of its prompts
        measured = [(args.concept, args.kind or dict(erased).get(args.concept))]
        names = names if args.concept in names else []
    else:
        measured = [(erased[0][0], args.kind or erased[0][1]), *erased[1:]]
    total = (args.n_erase + args.n_retain) * (2 if edited is not None else 1) * len(measured)
    with _bar(f"evaluating {', '.join(repr(c) for c, _ in measured)}", total, args.json) as bar:
        reports = evaluate_each(model, edited, measured, names, on_progress=_fraction_progress(bar, total),
                                n_erase=args.n_erase, n_retain=args.n_retain, num_steps=args.steps, guidance=args.guidance,
                                seed=args.seed, neighbours=_list_arg(args.neighbours))
    payloads = []
    for report in reports:
        payload = report.to_dict()
        if report.after is not None:
            payload["verdict"] = verdict(report).to_dict()
        payloads.append(payload)
    payload = payloads[0] if len(payloads) == 1 else {"concepts": payloads}
    if edit is not None:
        payload["edit"] = {"path": str(args.edit), "method": edit.config.method, "seconds": edit.seconds,
                           "concepts": [c for c, _ in erased],
                           "sanity": edit.sanity.to_dict() if edit.sanity is not None else None}
    grids = None
    if args.grid is not None:
        from kscu.grids import comparison_grids

        grids = [comparison_grids(model, edited, concept, _list_arg(args.neighbours), kind=kind) for concept, kind in measured]
        _save_grids(grids, args.grid)
        payload["grid"] = str(args.grid)
    _record(args, payload, reports, model, edit=edit, edit_path=args.edit, grids=grids)
    _print(args, payload, "\n\n".join(format_table(report) for report in reports))
    return 0


def _save_grids(grids: list[dict], path: Path) -> None:
    """Before and after grids side by side in one PNG (the before grid once, then each after grid)."""
    from kscu.grids import comparison_panels, side_by_side

    path.parent.mkdir(parents=True, exist_ok=True)
    side_by_side(comparison_panels(grids)).save(path)


def _verdict_line(checks: Verdict | None, attribute: str, concept: str = "") -> str:
    if checks is None:
        return "no judge for this concept on this model: judge the grids and the image change"
    return f"verdict{f' ({concept})' if concept else ''}: " + checks.summary(attribute)


def _change_line(change) -> str:
    neighbours = f", neighbours {change.neighbour_ssim:.3f}" if change.neighbour_ssim is not None else ""
    return f"image change (SSIM before vs after, 1 = unchanged): concept {change.concept_ssim:.3f}{neighbours}"


def cmd_quick_erase(args) -> int:
    from kscu.config import UnlearnConfig
    from kscu.evaluation import format_table
    from kscu.export import check_edit_output, save_edit_or_keep
    from kscu.recipes import quick_erase
    from kscu.validation import validate

    values = _concept_inputs(args)
    concept, also = values["concept"], tuple(_list_arg(values.get("also")) or ())
    if concept is None:
        raise ValueError("give --concept (or --concepts): the concept to erase")
    validate(UnlearnConfig(concept=concept, kind=args.kind, iterations=args.iterations, also=also, schedule=args.schedule))
    if args.out is not None:
        check_edit_output(args.out, overwrite=args.force)
    model = _load(args)
    import torch

    torch.set_num_threads(1)  # training and the unedited side run in two threads, one core each
    with _bar(f"quick erase {', '.join(repr(c) for c in (concept, *also))}", 100, args.json) as bar:
        out = quick_erase(model, concept, args.kind, also=also, schedule=args.schedule, iterations=args.iterations,
                          robust=args.robust, adversarial=args.adversarial, n_erase=args.n_erase, n_retain=args.n_retain, on_progress=_fraction_progress(bar))
    payload = out.to_dict()
    saved = save_edit_or_keep(out.result, args.out, overwrite=args.force) if args.out is not None else None
    if saved is not None:
        payload["edit"] = str(saved.path)
    _record(args, payload, out, model, edit_path=saved.path if saved is not None else None)
    if args.grid is not None:
        _save_grids([out.grids], args.grid)
        payload["grid"] = str(args.grid)
    erased = ", ".join(f"{c.concept!r} ({c.kind}, {c.iterations} iterations)" for c in out.result.configs)
    lines = [f"erased {erased} with KSCU in {out.result.seconds:.1f}s"]
    if out.result.sanity is not None:
        lines.append(out.result.sanity.message)
    lines += [format_table(report) for report in out.reports] + [_change_line(out.change)]
    if out.reports:
        lines += [_verdict_line(v, r.attribute, r.concept if len(out.reports) > 1 else "") for r, v in zip(out.reports, out.verdicts)]
    else:
        lines.append(_verdict_line(None, out.result.config.kind))
    _print(args, payload, "\n".join(lines))
    if saved is not None and saved.failure is not None:
        print(f"error: {saved.failure}; the trained edit is kept at {saved.path}: move it where you want it", file=sys.stderr)
        return 1
    return 0


def cmd_compare(args) -> int:
    from kscu.evaluation import format_table, verdict
    from kscu.export import check_compatible
    from kscu.importing import open_edit
    from kscu.recipes import compare

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    model = _load(args)
    edits = {str(path): open_edit(path, model, args.concept) for path in args.edit}
    for label, edit in edits.items():
        warning = check_compatible(edit, model)
        if warning:
            print(f"warning: {label}: {warning}", file=sys.stderr)
    with _bar("compare", 100, args.json) as bar:
        out = compare(model, edits, _list_arg(args.neighbours), seeds, measure=not args.no_measure, n_erase=args.n_erase,
                      n_retain=args.n_retain, on_progress=_fraction_progress(bar))
    payload = out.to_dict()
    if args.grid is not None:
        _save_grids(list(out.grids.values()), args.grid)
        payload["grid"] = str(args.grid)
    lines = []
    for label in out.grids:
        lines.append(f"== {label}")
        if label in out.reports:
            lines.append(format_table(out.reports[label]))
        lines += [_change_line(out.changes[label]), _verdict_line(out.verdicts.get(label), out.kind)]
        for report in out.others.get(label, []):  # the other concepts a multi-concept edit erased
            lines += [format_table(report), _verdict_line(verdict(report), report.attribute, report.concept)]
    _record(args, payload, out, model, edit_path=", ".join(map(str, args.edit)))
    _print(args, payload, "\n".join(lines + out.notes))
    return 0


def cmd_attack(args) -> int:
    import numpy as np

    from kscu.attack import attack_target, red_team
    from kscu.attack_config import AttackBudget, budget_fields

    budget = AttackBudget(**{name: getattr(args, name) for name, _, _ in budget_fields()})
    budget.check()  # before the model loads
    model = _load(args)
    edits = {str(path): _open_edit(path, model, args.concept) for path in args.edit}
    target = attack_target({label: edit.configs for label, edit in edits.items()}, args.target)  # before any UNet is copied
    with _bar(f"{args.attack} attack on {target.concept!r}", 100, args.json) as bar:
        report = red_team(model, {label: edit.apply(model) for label, edit in edits.items()}, target.concept, target.kind, args.attack,
                          budget, avoid=target.also_erased, on_progress=_fraction_progress(bar))
    payload = report.to_dict()
    if args.grid is not None:
        from kscu.grids import image_grid

        rows = [image for run in report.runs.values() for image in (run.plain_images, run.attack_images)]
        labels = [f"{label}: {side}" for label in report.runs for side in ("plain prompts", f"{args.attack} attack")]
        args.grid.parent.mkdir(parents=True, exist_ok=True)
        image_grid(np.concatenate(rows), len(rows), len(report.seeds), labels, scale=max(1, 64 // rows[0].shape[1])).save(args.grid)
        payload["grid"] = str(args.grid)
    lines = [f"{'model':<28} {'plain prompts':>20} {'attacked':>20} {'seconds':>8}"]
    lines += [f"{label:<28} {str(run.pre):>20} {str(run.post):>20} {run.seconds:>8.1f}" for label, run in report.runs.items()]
    lines += [report.verdict(label) for label in report.runs]
    _record(args, payload, report, model, edit=next(iter(edits.values())) if len(edits) == 1 else None, edit_path=", ".join(edits))
    _print(args, payload, "\n".join(lines))
    return 0


def cmd_sweep(args) -> int:
    from kscu.sweep import Setting, SweepError, SweepPlan, grid_settings, run_sweep, save

    try:
        seeds = tuple(int(seed) for seed in _list_arg(args.seeds) or [])
    except ValueError:
        raise SweepError(f"seeds: {args.seeds!r} is not a comma list of whole numbers, e.g. 0,1,2") from None
    settings = []
    if args.methods is not None or args.windows is not None or not args.setting:
        settings = grid_settings(_list_arg(args.methods) or ["kscu"], _list_arg(args.windows) or ["preset"])
    settings += [Setting.parse(text) for text in args.setting or []]
    plan = SweepPlan(tuple(_list_arg(args.concepts) or []), seeds, tuple(settings), args.model, args.family, args.judge, args.device,
                     args.allow_pickle, args.num_steps, args.iterations, args.n_erase, args.n_retain, args.eval_steps, args.quick_eval,
                     args.ua_goal, args.max_drop, args.threads)

    def report(cell) -> None:
        row = cell.row()
        print(f"{row['setting']} / {row['concept']} / seed {row['seed']}: UA {row['ua']:.2f}, worst {row['worst']} "
              f"{row['worst_change']:+.1f} points, goal {row['goal']} ({row['seconds']:.0f} s)", file=sys.stderr)

    result = run_sweep(plan, args.out, use_ray=args.ray, ray_address=args.address, workers=args.workers, on_cell=report)
    results, plot = save(result, args.out)
    rows = result.rows()
    columns = ("setting", "concept", "seed", "seconds", "ua", "ua_low", "ira_change", "worst", "worst_change", "worst_low", "goal", "verdict")
    text = _table(columns, [[row[c] for c in columns] for row in rows])
    text += f"\n{result.ran} cells run now, {len(rows) - result.ran} from the store; table: {results}; plot: {plot}"
    _print(args, {**result.to_dict(), "ran": result.ran, "results": str(results), "plot": str(plot)}, text)
    return 0


def cmd_export(args) -> int:
    import torch

    from kscu.export import export_pipeline, export_single_file
    from kscu.importing import open_edit
    from kscu.lora import low_rank, save_lora

    if args.single_file is None and args.out is None:
        raise ValueError("give --out (a pipeline folder, or with --lora the LoRA's folder or file) or --single-file FILE.safetensors")
    if (args.rank is not None or args.layout != "both") and not args.lora:
        raise ValueError("--rank and --layout belong to a LoRA export: add --lora")
    if args.lora and args.out.suffix == ".safetensors" and args.layout == "both":
        raise ValueError("--out is one file: choose --layout diffusers or kohya, or give a folder for both")
    model = _load(args)
    edit = open_edit(args.edit, model, args.concept)
    if args.single_file is not None:
        path = export_single_file(model, edit, args.single_file, overwrite=args.force, dtype=torch.float16 if args.half else None)
        _print(args, {"single_file": str(path)}, f"SD1.x checkpoint with the edit written to {path}")
    elif args.lora:
        lora = low_rank(edit, model, args.rank or DEFAULT_RANK)
        layouts = LAYOUTS if args.layout == "both" else (args.layout,)
        paths = {layout: str(save_lora(lora, args.out, layout, overwrite=args.force)) for layout in layouts}
        notes = [lora.dropped_message()] if lora.dropped else []
        _print(args, {"lora": paths, "rank": lora.rank, "bytes": lora.file_bytes(), "notes": notes},
               "\n".join([f"rank-{lora.rank} LoRA ({layout}) written to {path}" for layout, path in paths.items()] + notes))
    else:
        path = export_pipeline(model, edit, args.out, overwrite=args.force)
        _print(args, {"pipeline": str(path)}, f"diffusers pipeline with the edit written to {path}")
    return 0


def cmd_generate(args) -> int:
    from kscu.grids import image_grid
    from kscu.sampling import Sampler

    model = _load(args)
    _, edited = _edited_unet(args, model)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    images = Sampler(model, args.steps, args.guidance).generate(edited or model.unet, [args.prompt] * len(seeds), seeds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images, 1, len(seeds), scale=max(1, 256 // images.shape[2])).save(args.out)
    _print(args, {"image": str(args.out), "seeds": seeds}, f"{len(seeds)} images saved to {args.out}")
    return 0


def cmd_runs(args) -> int:
    from kscu import runs

    root = args.runs or runs.default_root()
    if args.action == "list":
        records = runs.list_runs(root)
        text = (_table(runs.SUMMARY_COLUMNS, [runs.summary_row(r) for r in records]) if records else
                f"no runs recorded in {root} yet: unlearn, evaluate, compare, attack and quick-erase each record one")
        _print(args, {"root": str(root), "runs": [r.to_dict() for r in records]}, text)
    elif args.action == "show":
        record = runs.load_run(root, args.id)
        lines = [f"{record.id}: {record.kind} of {', '.join(record.concepts)} ({record.method}) on {record.model_source} "
                 f"(hash {record.model_hash[:12]}), {record.created}, {record.seconds:.1f} s"]
        lines += [f"verdict: {record.verdict}"] * bool(record.verdict) + [f"edit: {record.edit}"] * bool(record.edit)
        if record.metrics:
            lines.append(_table(runs.METRIC_COLUMNS, runs.metric_lines(record)))
        if record.losses:
            lines.append(f"loss curve: {len(record.losses)} points, {record.losses[0]:.4g} -> {record.losses[-1]:.4g}")
        lines += [f"thumbnail: {record.thumbnail_path} (seeds {record.seeds})"] * bool(record.thumbnail)
        lines.append("config: " + json.dumps(record.config, indent=2))
        _print(args, record.to_dict(), "\n".join(lines))
    elif args.action == "compare":
        comparison = runs.compare_runs(runs.load_run(root, args.a), runs.load_run(root, args.b))
        a, b = comparison.a, comparison.b
        lines = [f"A: {a.id} ({a.kind}, {a.method}); B: {b.id} ({b.kind}, {b.method}); the same model (hash {a.model_hash[:12]}), "
                 + ("the same seeds" if comparison.same_seeds else "not the same grid seeds"),
                 _table(runs.DELTA_COLUMNS, runs.delta_lines(comparison))]
        lines += [f"setting {key}: {va!r} -> {vb!r}" for key, (va, vb) in comparison.config_changes.items()]
        lines += [f"thumbnails: {a.thumbnail_path} | {b.thumbnail_path}"] * bool(a.thumbnail and b.thumbnail)
        _print(args, comparison.to_dict(), "\n".join(lines + [f"note: {n}" for n in comparison.notes]))
    else:
        record = runs.load_run(root, args.id)  # an unknown id fails before the question
        if not args.yes:
            print(f"delete run {record.id} ({record.kind} of {', '.join(record.concepts)}, {record.method})? [y/N] ", end="", file=sys.stderr,
                  flush=True)
            answer = sys.stdin.readline().strip().lower()
            if answer not in ("y", "yes"):
                _print(args, {"deleted": None}, f"nothing deleted: run {record.id} is kept (answer y, or add --yes)")
                return 0
        runs.delete_run(root, record.id)
        _print(args, {"deleted": record.id}, f"deleted run {record.id}")
    return 0


def _table(columns: tuple[str, ...], rows: list[list]) -> str:
    """Plain-text columns, each as wide as its widest cell."""
    cells = [list(columns)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def _fraction_progress(bar, total: int = 100):
    """A kscu.progress.ProgressFn that moves a bar of `total` steps."""
    def progress(update) -> None:
        bar.n = round(update.fraction * total)
        bar.set_postfix_str(update.message)
        bar.refresh()

    return progress


def _bar(description: str, total: int, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, disable=quiet, file=sys.stderr, leave=False)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    handlers = {"influence": cmd_influence, "unlearn": cmd_unlearn, "evaluate": cmd_evaluate, "quick-erase": cmd_quick_erase,
                "compare": cmd_compare, "attack": cmd_attack, "sweep": cmd_sweep, "export": cmd_export, "generate": cmd_generate, "runs": cmd_runs}
    from kscu.models import ModelLoadError
    from kscu.validation import ConfigError

    try:
        return handlers[args.command](args)
    except ConfigError as error:  # name the flag the user typed
        print(f"error: --{error.field.replace('_', '-')}: {error.problem}", file=sys.stderr)
        return 2
    except (ModelLoadError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

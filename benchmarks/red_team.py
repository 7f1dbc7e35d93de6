"""Can the erased concept be brought back? The attack success rate (ASR) of the red team's attacks
(kscu.attack) on the unedited model and on KSCU, robust KSCU (config.robust), adversarially trained KSCU
(config.adversarial) and ESD edits,
with training and attack time, and the robust edit's retention.

For each concept and training seed: the edits with the domain's preset (`python -m kscu unlearn
--concept C [--adversarial | --method esd]`), then each attack with its default budget on all of
them at once (the same prompts and seeds), then UA / IRA / CRA of each edit on the workbench's
100 + 120 held-out evaluation. Resumable: every finished (concept, seed) row is kept in
--work/rows.jsonl and every edit in --work/edits, so a restarted run continues where it stopped.

Run:   nohup nice python benchmarks/red_team.py > red_team.log 2>&1 &
Smoke: python benchmarks/red_team.py --smoke --model <micro demo folder>
Runtime on the 2-core CPU with the defaults: about 2.5 h (3 concepts x 3 seeds; ESD's training is
most of it); `--methods kscu,robust --concepts striped` about 25 min.
Writes red_team.json and red_team.png (ASR per model and attack, seed mean with the lowest and
highest seed) under benchmarks/results/.
"""
from __future__ import annotations

import json
from pathlib import Path

from _common import REPO, BenchParser, Timer, figure, format_table, ints, load_demo, save_figure, score, words, write_results
from kscu.attack import red_team
from kscu.attack_config import AttackBudget
from kscu.config import UnlearnConfig
from kscu.export import load_edit, save_edit
from kscu.trainer import unlearn

METHODS = {"kscu": {}, "robust": {"robust": True}, "adversarial": {"adversarial": True}, "esd": {"method": "esd"}}
"""Each edit as the config fields it changes from the preset."""


def edit_for(model, concept: str, seed: int, method: str, iterations: int | None, work: Path):
    """The edit (trained now, or loaded from an earlier run of this benchmark) and its training seconds."""
    path = work / "edits" / f"{concept}-{method}-seed{seed}"
    if not path.exists():
        result = unlearn(model, UnlearnConfig(concept, seed=seed, iterations=iterations, **METHODS[method]))
        save_edit(result, path)
    edit = load_edit(path)
    stale = [name for name, value in METHODS[method].items() if getattr(edit.config, name) != value]
    if stale:
        raise SystemExit(f"{path}: an edit from an earlier run with other settings ({', '.join(stale)}); pass another --work")
    return edit, edit.seconds


def plot(table: list[dict], args) -> None:
    """Grouped bars per concept: for each model, the plain prompts' ASR and each attack's (mean
    over seeds, the lowest and highest seed as the error bar)."""
    concepts = list(dict.fromkeys(r["concept"] for r in table))
    fig, axes = figure(1, len(concepts), width=6.0, height=3.2)
    for ax, concept in zip(axes[0], concepts):
        rows = [r for r in table if r["concept"] == concept]
        models = list(dict.fromkeys(r["model"] for r in rows))
        attacks = list(dict.fromkeys(r["attack"] for r in rows))
        series = [("plain prompts", "pre", attacks[0])] + [(f"{a} attack", "post", a) for a in attacks]
        width = 0.8 / len(series)
        for j, (name, key, attack) in enumerate(series):
            values = [[r[key] for r in rows if r["model"] == m and r["attack"] == attack] for m in models]
            means = [sum(v) / len(v) for v in values]
            low = [m - min(v) for m, v in zip(means, values)]
            high = [max(v) - m for m, v in zip(means, values)]
            ax.bar([i + j * width for i in range(len(models))], means, width, yerr=[low, high], capsize=2, label=name)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(models))], models)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("attack success rate")
        ax.set_title(f"{concept!r}: concept back on this share of images")
    axes[0, 0].legend(fontsize=7)
    save_figure(fig, args, "red_team")


def main() -> None:
    parser = BenchParser(__doc__)
    parser.option("--concepts", "striped,star,red", "striped", "comma list of demo-world concepts", words)
    parser.option("--seeds", "0,1,2", "0", "comma list of training seeds", ints)
    parser.option("--methods", "kscu,robust,esd", "kscu,robust", "edits to attack (kscu, robust, adversarial, esd)", words)
    parser.option("--attacks", "embedding,rephrase,soft", "embedding,rephrase", "attacks (embedding, rephrase, soft)", words)
    parser.option("--iterations", None, 2, "unlearning iterations (None: the preset's)", int)
    parser.option("--prompts", 48, 4, "attack images per model", int)
    parser.option("--attack-steps", None, 2, "attack optimisation steps (None: the default budget's)", int)
    parser.evaluation_options()
    parser.add_argument("--work", type=Path, default=REPO / "work" / "red_team", help="resumable state (default work/red_team)")
    args = parser.parse()
    if args.smoke:
        args.work = args.out / "red_team_work"
    args.work.mkdir(parents=True, exist_ok=True)
    model = load_demo(args)
    budget = AttackBudget(prompts=args.prompts, **({"steps": args.attack_steps} if args.attack_steps else {}),
                          **({"references": 2, "batch": 2, "num_steps": 4} if args.smoke else {}))
    rows_file = args.work / "rows.jsonl"
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
    done = {(r["concept"], r["seed"]) for r in rows}
    base_scores: dict[str, dict] = {}
    for concept in args.concepts:
        for seed in args.seeds:
            if (concept, seed) in done:
                continue
            edits, row = {}, {"concept": concept, "seed": seed, "train_seconds": {}, "attacks": {}, "retention": {}}
            for method in args.methods:
                edit, seconds = edit_for(model, concept, seed, method, args.iterations, args.work)
                edits[method], row["train_seconds"][method] = edit, seconds
            unets = {method: edit.apply(model) for method, edit in edits.items()}
            kind = next(iter(edits.values())).config.kind
            for attack in args.attacks:
                with Timer() as took:
                    report = red_team(model, unets, concept, kind, attack, budget)
                row["attacks"][attack] = {label: run.to_dict() | {"losses": None} for label, run in report.runs.items()}
                print(f"{concept} seed {seed} {attack} ({took.seconds:.0f} s): "
                      + "; ".join(f"{label} {run.pre} -> {run.post} ({run.seconds:.0f} s)" for label, run in report.runs.items()), flush=True)
            if concept not in base_scores:
                base_scores[concept] = score(model, model.unet, concept, args.n_erase, args.n_retain, args.eval_steps)
            for method, unet in unets.items():
                after = score(model, unet, concept, args.n_erase, args.n_retain, args.eval_steps)
                before = base_scores[concept]
                row["retention"][method] = {"ua": after["ua"], "ira_change": after["ira"] - before["ira"],
                                            "worst_cra_change": min(after["cra"][g] - before["cra"][g] for g in before["cra"])}
            print(f"{concept} seed {seed} retention: {row['retention']}", flush=True)
            rows.append(row)
            with rows_file.open("a") as f:
                f.write(json.dumps(row) + "\n")
    table = []
    for r in rows:
        for attack, models in r["attacks"].items():
            for label, run in models.items():
                table.append({"concept": r["concept"], "seed": r["seed"], "attack": attack, "model": label,
                              "pre": run["pre_asr"]["value"], "post": run["post_asr"]["value"], "post_high": run["post_asr"]["high"],
                              "attack_s": run["seconds"], "train_s": r["train_seconds"].get(label)})
    print(format_table(table, ["concept", "seed", "attack", "model", "pre", "post", "post_high", "attack_s", "train_s"]))
    plot(table, args)
    write_results(args, "red_team", {"budget": budget.__dict__, "rows": rows},
                  {"rows": len(rows), "concepts": args.concepts, "seeds": args.seeds, "methods": args.methods})


if __name__ == "__main__":
    main()

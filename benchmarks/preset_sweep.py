"""Preset tuning on the embedded demo model: erasure against retention for a list of settings.

Each setting (learning rate, iterations, optionally eta, concepts to preserve with the
optional preservation term and its weight, and the anchor concept) trains one KSCU edit of --concept with
everything else from the kind's preset, and is scored on evaluate_edit's prompts and seeds (the
CLI's `evaluate` defaults), the base scored once. The table shows what every extra update buys
in erasure and costs in retention; the plot puts each setting on the detection-rate / IRA plane.

Run:   python benchmarks/preset_sweep.py [--concept striped] [--settings 3e-4:250,2e-4:150,...]
       python benchmarks/preset_sweep.py --settings 2e-4:150:keep=dotted+checkered --out benchmarks/results/preserve
Smoke: python benchmarks/preset_sweep.py --smoke --model <micro demo folder>   (a few seconds)
Runtime on the 2-core CPU with the defaults: about 10 min (per setting 25-55 s of training and
35 s of evaluation, plus the base).
Writes preset_sweep.json and preset_sweep.png under benchmarks/results/.
"""
from __future__ import annotations

from _common import BenchParser, Timer, figure, format_table, kind_of, load_demo, save_figure, score, words, write_results
from kscu.config import UnlearnConfig
from kscu.trainer import unlearn

DEFAULT_SETTINGS = "2e-4:200:anchor=:w=3,3e-4:200:anchor=:w=3,3e-4:200:anchor=:keep=,1.5e-4:200:keep=,1e-4:200:w=3,1.5e-4:200"


def setting(text: str) -> dict:
    """'lr:iterations[:eta][:keep=a+b][:w=weight][:anchor=c][:seed=N]' -> UnlearnConfig fields (keep:
    concepts to preserve, joined by '+', absent: the preset's, 'keep=' alone: none; w: the
    preservation weight, default the preset's; anchor: the substitute concept, absent: the preset's,
    'anchor=' alone: none; seed: the training seed, default 0)."""
    parts = text.split(":")
    usage = f"{text!r}: a setting is lr:iterations[:eta][:keep=a+b][:w=weight][:anchor=c][:seed=N], e.g. 2e-4:150 or 3e-4:250:keep=dotted+checkered"
    if len(parts) < 2:
        raise SystemExit(usage)
    try:
        fields = {"lr": float(parts[0]), "iterations": int(parts[1])}
        for part in parts[2:]:
            if part.startswith("keep="):
                fields["preserve"] = tuple(part[5:].split("+"))
            elif part.startswith("w="):
                fields["preserve_weight"] = float(part[2:])
            elif part.startswith("anchor="):
                fields["anchor"] = part[7:]
            elif part.startswith("seed="):
                fields["seed"] = int(part[5:])
            else:
                fields["eta"] = float(part)
    except ValueError:
        raise SystemExit(usage) from None
    return fields


def main() -> None:
    parser = BenchParser(__doc__)
    parser.option("--concept", "striped", "striped", "the demo-world concept to erase")
    parser.option("--settings", DEFAULT_SETTINGS, "3e-4:2,1e-4:2:0:keep=dotted", "comma list of lr:iterations[:eta][:keep=a+b][:w=weight][:anchor=c][:seed=N]", words)
    parser.option("--num-steps", 50, 10, "DDIM steps of the training schedule (K)", int)
    parser.evaluation_options()
    args = parser.parse()
    model = load_demo(args)
    kind = kind_of(args.concept)
    evaluation = dict(n_erase=args.n_erase, n_retain=args.n_retain, num_steps=args.eval_steps)
    base = score(model, model.unet, args.concept, **evaluation)
    rows = [{"setting": "unedited", "detection": base["detection_rate"], "ira": base["ira"], "cra_mean": base["cra_mean"], "seconds": None}]
    for text in args.settings:
        config = UnlearnConfig(concept=args.concept, kind=kind, num_steps=args.num_steps, **setting(text))
        with Timer() as timer:
            result = unlearn(model, config)
        after = score(model, result.apply(model), args.concept, **evaluation)
        rows.append({"setting": text, "detection": after["detection_rate"], "ira": after["ira"], "cra_mean": after["cra_mean"],
                     "cra": after["cra"], "seconds": timer.seconds})
        print(format_table(rows[-1:], ["setting", "detection", "ira", "cra_mean", "seconds"]), flush=True)
    print(format_table(rows, ["setting", "detection", "ira", "cra_mean", "seconds"]))
    fig, axes = figure(width=5.0, height=4.0)
    ax = axes[0, 0]
    for row in rows:
        ax.scatter(row["detection"], row["ira"], color="grey" if row["seconds"] is None else "tab:blue")
        ax.annotate(row["setting"], (row["detection"], row["ira"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel=f"{args.concept} detection rate (lower: erased)", ylabel="IRA (higher: other values kept)",
           title=f"Erasing {args.concept}: settings lr:iterations[:options]")
    ax.grid(alpha=0.3)
    save_figure(fig, args, "preset_sweep")
    write_results(args, "preset_sweep", {"base": base, "rows": rows}, {"base_detection": base["detection_rate"], "base_ira": base["ira"]})


if __name__ == "__main__":
    main()

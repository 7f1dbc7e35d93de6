"""The divergence guard and the sanity check on the embedded demo model: the style preset's edit
of "striped" and runs with ever larger learning rates, each with the sanity check's measure (how
far the noise prediction moved on prompts that do not name the concept) or where the guard
stopped it. These rows set MAX_RELATIVE_CHANGE (kscu/divergence.py) and MAX_CHANGE (kscu/sanity.py).

Run:   python benchmarks/safety_checks.py
Smoke: python benchmarks/safety_checks.py --smoke --model <micro demo folder>   (a few seconds)
Runtime on the 2-core CPU with the defaults: about 1 min.
Writes safety_checks.json and safety_checks.png under benchmarks/results/.
"""
from __future__ import annotations

from _common import BenchParser, Timer, figure, format_table, load_demo, save_figure, write_results
from kscu.config import UnlearnConfig
from kscu.divergence import UnlearnDiverged
from kscu.trainer import unlearn

RUNS = [  # label, UnlearnConfig overrides (the preset's for everything left out)
    ("style preset", {}),
    ("lr 3e-3, 40 it", {"lr": 3e-3, "iterations": 40}),
    ("lr 1e-2, 40 it", {"lr": 1e-2, "iterations": 40}),
    ("lr 1e-2, 40 it, full UNet", {"lr": 1e-2, "iterations": 40, "params": "full"}),
    ("lr 1e-2, 200 it", {"lr": 1e-2, "iterations": 200}),
]


def main() -> None:
    parser = BenchParser(__doc__)
    parser.option("--concept", "striped", "striped", "demo-world style to erase")
    parser.option("--scale", 1.0, 0.02, "multiplies every run's iterations (smoke runs a few)", float)
    args = parser.parse()
    model = load_demo(args)
    rows = []
    for label, overrides in RUNS:
        config = UnlearnConfig(args.concept, "style", **overrides)
        resolved = config.resolve(model.domain)
        config = UnlearnConfig(args.concept, "style", **{**overrides, "iterations": max(1, round(resolved.iterations * args.scale))})
        with Timer() as t:
            try:
                result = unlearn(model, config)
                outcome, change, passed = "finished", result.sanity.change, result.sanity.passed
            except UnlearnDiverged as stopped:
                outcome, change, passed = f"stopped at iteration {stopped.iteration}", None, None
        rows.append({"run": label, "lr": f"{resolved.lr:g}", "iterations": config.iterations, "params": resolved.params,
                     "outcome": outcome, "sanity_change": change, "sanity_passed": passed, "seconds": t.seconds})
        print(format_table(rows[-1:], list(rows[-1])), flush=True)
    print(format_table(rows, list(rows[0])))
    fig, axes = figure(1, 1, width=6.0, height=2.8)
    ax = axes[0, 0]
    shown = [r for r in rows if r["sanity_change"] is not None]
    ax.barh([r["run"] for r in shown], [r["sanity_change"] for r in shown])
    ax.axvline(0.5, color="red", linestyle="--", label="sanity limit")
    ax.set_xlabel("noise-prediction change on other prompts")
    ax.legend()
    save_figure(fig, args, "safety_checks")
    write_results(args, "safety_checks", {"rows": rows}, {"runs": len(rows), "flagged": [r["run"] for r in rows if r["sanity_passed"] is False],
                                                          "stopped": [r["run"] for r in rows if r["outcome"] != "finished"]})


if __name__ == "__main__":
    main()

"""What the influence analysis costs on the embedded demo model: seconds and UNet evaluations per
measure (gap, causal, and the neighbours' curves the window rule weighs) for one concept with the
workbench's default settings, and the window start S the curves suggest.

UNet images are counted with a forward pre-hook on the base UNet and attributed to the measure
that kscu.influence.analyze reports progress for; seconds per measure are analyze's own timings.

Run:   python benchmarks/influence_cost.py [--concept striped] [--repeats 3]
Smoke: python benchmarks/influence_cost.py --smoke --model <micro demo folder>   (a few seconds)
Runtime on the 2-core CPU with the defaults: about 1 min per repeat.
Writes influence_cost.json (timings, the suggestion and the measured curves) and influence_cost.png under benchmarks/results/.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict

from _common import BenchParser, Timer, format_table, kind_of, load_demo, save_figure, write_results
from kscu.influence import MEASURES, analyze, switch_grid
from kscu.plots import influence_figure
from kscu.progress import Update

PARTS = (*MEASURES, "neighbours")
"""What the UNet images are split by: the two measures, and the neighbours' curves."""


class UnetImages:
    """Images through the base UNet, split by the measure analyze is working on."""

    def __init__(self) -> None:
        self.total, self.seen = 0, 0
        self.by_measure = dict.fromkeys(PARTS, 0)

    def hook(self, _module, inputs) -> None:
        self.total += inputs[0].shape[0]

    def progress(self, update: Update) -> None:
        message = update.message
        measure = "gap" if message.startswith("gap") else "neighbours" if message.startswith("neighbour") else "causal"
        self.by_measure[measure] += self.total - self.seen
        self.seen = self.total


def main() -> None:
    parser = BenchParser(__doc__)
    parser.option("--concept", "striped", "striped", "demo-world concept to analyse")
    parser.option("--steps", 25, 5, "DDIM steps of the analysed schedule", int)
    parser.option("--seeds", 4, 2, "seeds of the gap measure", int)
    parser.option("--causal-seeds", 8, 2, "seeds of the causal measure", int)
    parser.option("--neighbour-seeds", 8, 2, "seeds per neighbour of the window rule (0: no neighbours)", int)
    parser.option("--switch-points", 11, 3, "switch points of the causal curves", int)
    parser.option("--repeats", 1, 1, "analyses timed (the table shows medians)", int)
    args = parser.parse()
    model = load_demo(args)
    kind = kind_of(args.concept)
    runs = []
    for _ in range(args.repeats):
        counter = UnetImages()
        handle = model.unet.register_forward_pre_hook(counter.hook)
        try:
            with Timer() as timer:
                report = analyze(model, args.concept, kind, num_steps=args.steps, seeds=args.seeds, causal_seeds=args.causal_seeds,
                                 neighbours=None if args.neighbour_seeds else (), neighbour_seeds=max(args.neighbour_seeds, 1),
                                 switch_points=args.switch_points, on_progress=counter.progress)
        finally:
            handle.remove()
        runs.append({"seconds": report.seconds, "total_seconds": timer.seconds, "unet_images": counter.by_measure})
    points = len(switch_grid(args.steps, args.switch_points))
    measured_neighbours = sum(c.measure == "neighbour_until" for c in report.curves)
    decoded = {"gap": 0, "causal": 2 * (points - 1) * args.causal_seeds,  # each curve's k = 0 is the other's k = K
               "neighbours": points * args.neighbour_seeds * measured_neighbours}
    rows = []
    for measure in PARTS:
        seconds = statistics.median(r["seconds"].get(measure, 0.0) for r in runs)
        images = runs[-1]["unet_images"][measure]
        rows.append({"measure": measure, "seconds": seconds, "unet_images": images, "ms_per_image": 1000 * seconds / images if images else None,
                     "decoded_images": decoded[measure]})
    total = statistics.median(r["total_seconds"] for r in runs)
    rows.append({"measure": "total", "seconds": total, "unet_images": sum(r["unet_images"] for r in rows)})
    print(f"{args.concept} ({kind}): {args.steps} steps, {args.seeds} gap seeds, {args.causal_seeds} causal seeds, "
          f"{args.switch_points} switch points, median of {args.repeats}")
    print(format_table(rows, ["measure", "seconds", "unet_images", "ms_per_image", "decoded_images"]))
    print(f"suggested S = {report.suggested_start} of {report.num_steps} ({report.suggested_start_of_50} of 50); "
          f"preset for {kind}: {report.paper_start_of_50} of 50. {report.rule}")
    save_figure(influence_figure([report]), args, "influence_cost")
    suggestion = {"suggested_start": report.suggested_start, "num_steps": report.num_steps,
                  "suggested_start_of_50": report.suggested_start_of_50, "preset_start_of_50": report.paper_start_of_50}
    write_results(
        args, "influence_cost",
        {"model": model.source, "model_hash": model.model_hash,
         "rows": rows, "runs": runs, **suggestion, "rule": report.rule, "notes": report.notes,
         "lead": None if report.lead is None else asdict(report.lead),
         "curves": [curve.to_dict() for curve in report.curves]},
        {"seconds": {r["measure"]: r["seconds"] for r in rows}, **suggestion},
    )


if __name__ == "__main__":
    main()

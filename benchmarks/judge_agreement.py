"""Does the CLIP judge give the numbers the exact judge gives? The proof that the generic path
(any SD1.x model, a CLIP judge) measures what the demo world measures exactly.

For each concept: the demo preset's edit (what `python -m kscu unlearn --concept C` makes), then
the embedded model loaded as an unknown SD1.x pipeline (family "sd1", the generic domain: its
templates, the judge's vocabulary) and evaluated on one set of images, the unedited model's and
the edit's, which both judges read: the shipped CLIP (assets/shape-clip, zero-shot) and the demo
world's exact classifier. The rows are UA / IRA / each CRA per judge and their difference.

Run:   python benchmarks/judge_agreement.py
Smoke: python benchmarks/judge_agreement.py --smoke --model <micro demo folder> --judge <micro CLIP folder>
Runtime on the 2-core CPU with the defaults: about 7 min (3 concepts, 2026-12-08).
Writes judge_agreement.json and judge_agreement.png under benchmarks/results/.
"""
from __future__ import annotations

from _common import REPO, BenchParser, Timer, figure, format_table, load_demo, save_figure, words, write_results
from kscu.config import UnlearnConfig
from kscu.evaluation import concept_metrics, read_images
from kscu.models import LoadedModel, load_model
from kscu.sampling import Sampler
from kscu.trainer import unlearn

SHAPE_CLIP = REPO / "assets" / "shape-clip"


def metric_pairs(metrics: dict) -> dict[str, float]:
    """UA, IRA and each CRA of one concept_metrics result, by name."""
    return {"UA": metrics["ua"], "IRA": metrics["ira"], **{f"CRA {g}": v for g, v in metrics["cra"].items()}}


def agreement(generic: LoadedModel, exact, edited_unet, concept: str, kind: str, n_erase: int, n_retain: int,
              num_steps: int = 25, seed: int = 1234) -> dict:
    """Both judges on the same images of the generic domain's plan: {side: {metric: (clip, exact)}}."""
    plan = generic.domain.evaluation_plan(concept, kind, None, n_erase, n_retain, seed)
    sampler = Sampler(generic, num_steps, 3.0)
    out = {}
    for side, unet in (("before", generic.unet), ("after", edited_unet)):
        images = sampler.generate(unet, plan.erase.prompts + plan.retain.prompts, plan.erase.seeds + plan.retain.seeds, batch_size=32)
        sides = []
        for judge in (generic.domain.judge, exact):
            read = read_images(judge, plan, images)
            sides.append(metric_pairs(concept_metrics(plan, {g: v[:n_erase] for g, v in read.items()},
                                                      {g: v[n_erase:] for g, v in read.items()})))
        out[side] = {name: (sides[0][name], sides[1][name]) for name in sides[0]}
    return out


def main() -> None:
    parser = BenchParser(__doc__)
    parser.add_argument("--judge", default=str(SHAPE_CLIP), help="CLIP judge folder (default: the shipped assets/shape-clip)")
    parser.option("--concepts", "striped,star,red", "striped", "comma list of demo-world concepts", words)
    parser.option("--iterations", None, 2, "unlearning iterations (None: the preset's)", int)
    parser.evaluation_options()
    args = parser.parse()
    demo = load_demo(args)
    generic = load_model(args.model, family="sd1", judge=args.judge)
    exact = demo.domain.judge
    rows, worst = [], 0.0
    for concept in args.concepts:
        with Timer() as trained:
            result = unlearn(demo, UnlearnConfig(concept, iterations=args.iterations))
        kind = result.config.kind
        with Timer() as measured:
            pairs = agreement(generic, exact, result.apply(generic), concept, kind, args.n_erase, args.n_retain, args.eval_steps)
        for side, metrics in pairs.items():
            for name, (clip, truth) in metrics.items():
                rows.append({"concept": concept, "kind": kind, "side": side, "metric": name, "clip": clip, "exact": truth,
                             "difference": clip - truth})
                worst = max(worst, abs(clip - truth))
        print(format_table([r for r in rows if r["concept"] == concept], list(rows[0])), flush=True)
        print(f"{concept}: edit {trained.seconds:.0f} s, both judges on the same images {measured.seconds:.0f} s", flush=True)
    fig, axes = figure(1, 1, width=6.0, height=3.2)
    ax = axes[0, 0]
    ax.scatter([r["exact"] for r in rows], [r["clip"] for r in rows], s=14)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("exact classifier")
    ax.set_ylabel("CLIP zero-shot judge")
    ax.set_title("UA / IRA / CRA before and after, same images")
    save_figure(fig, args, "judge_agreement")
    write_results(args, "judge_agreement", {"judge": args.judge, "rows": rows},
                  {"concepts": args.concepts, "largest_difference": worst, "rows": len(rows)})


if __name__ == "__main__":
    main()

"""KSCU against ESD on the embedded demo model: erasure, retention, cost and the trade-off curve.

For each concept (default striped = style, star = object/shape, red = colour) and training seed,
both methods run once with the same iterations (the KSCU preset's), learning rate and trainable
parameters (the preset's), prompt augmentation and seed. ESD differs only in what defines it:
steps drawn uniformly from all K steps, x_k sampled from noise at every iteration (no trajectory
reuse) and no lambda2 anchoring term. So the comparison isolates the key-step table and
trajectory reuse. (ESD's own SD1.4 setting, lr 1e-5, changes nothing on a model this small,
and a different parameter subset would confound the comparison.)

Each final edit is scored as evaluate_edit scores it (UA / IRA / CRA on held-out prompts, the
base scored once on the same prompts and seeds). Along the way, snapshots of the trainable
tensors at --curve-points of the run are scored on a smaller set (--curve-eval erase and as many
retain prompts), giving UA, IRA and CRA against iterations, wall time and UNet evaluations, and
the time and evaluations each method needs to reach UA >= 0.95 (linear interpolation between
snapshots of the seed-averaged curve; "not reached" when it never gets there).

Run:   python benchmarks/kscu_vs_esd.py [--concepts striped,star,red] [--seeds 0,1,2]
Smoke: python benchmarks/kscu_vs_esd.py --smoke --model <micro demo folder>   (about 10 s)
Runtime on the 2-core CPU with the defaults: 59 min measured (2026-11-26, the previous style preset
without the preservation term, which now adds to KSCU's training; per concept and seed
3-5 min, ESD's training most of it, evaluation included); --seeds 0 took 19 min.
Writes kscu_vs_esd.json and kscu_vs_esd.png under benchmarks/results/.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from _common import (
    BenchParser, Snapshots, checked_forwards, figure, first_crossing, floats, format_table, kind_of, load_demo,
    marks, save_figure, score, write_results,
)
from kscu.config import UnlearnConfig
from kscu.trainer import unlearn

UA_TARGET = 0.95
METHODS = ("kscu", "esd")
CURVE_KEYS = ("iteration", "seconds", "forwards", "ua", "ira", "cra_mean")


def configs(concept: str, seed: int, args, domain) -> dict[str, UnlearnConfig]:
    """KSCU with its preset, and ESD with the same iterations, lr and parameter subset."""
    kscu = UnlearnConfig(concept, kind_of(concept), "kscu", iterations=args.iterations, num_steps=args.num_steps, seed=seed).resolve(domain)
    return {"kscu": kscu, "esd": replace(kscu, method="esd").resolve(domain)}


def point(iteration: int, seconds: float, forwards: int, metrics: dict) -> dict:
    return {"iteration": iteration, "seconds": seconds, "forwards": forwards, "ua": metrics["ua"], "ira": metrics["ira"], "cra_mean": metrics["cra_mean"]}


def run(model, config: UnlearnConfig, args, base_curve: dict) -> dict:
    """Train once, score the final edit and every snapshot."""
    snapshots = Snapshots(marks(config.iterations, args.curve_points))
    result = unlearn(model, config, on_progress=snapshots)
    cumulative = np.cumsum(checked_forwards(result, model.domain))
    final = score(model, result.apply(model), config.concept, args.n_erase, args.n_retain, args.eval_steps)
    curve = [point(0, 0.0, 0, base_curve)]
    for m in snapshots.marks:
        edited = replace(result, params=snapshots.params[m]).apply(model)
        metrics = score(model, edited, config.concept, args.curve_eval, args.curve_eval, args.eval_steps)
        curve.append(point(m, snapshots.elapsed[m], int(cumulative[m - 1]), metrics))
    return {
        "concept": config.concept, "method": config.method, "seed": config.seed, "config": config.to_dict(),
        "seconds": result.seconds, "unet_forwards": result.unet_forwards, "unet_backwards": result.unet_backwards,
        "final": final, "curve": curve,
    }


def summarise(runs: list[dict]) -> dict:
    """Seed means of one (concept, method): final metrics, cost, mean curve and its UA target crossing."""
    curve = [{k: float(np.mean([r["curve"][j][k] for r in runs])) for k in CURVE_KEYS} for j in range(len(runs[0]["curve"]))]
    ua = [p["ua"] for p in curve]
    reach = {x: first_crossing([p[x] for p in curve], ua, UA_TARGET) for x in ("iteration", "seconds", "forwards")}
    return {
        "concept": runs[0]["concept"], "method": runs[0]["method"], "seeds": len(runs),
        **{k: float(np.mean([r["final"][k] for r in runs])) for k in ("ua", "ira", "cra_mean")},
        **{k: float(np.mean([r[k] for r in runs])) for k in ("seconds", "unet_forwards", "unet_backwards")},
        "curve": curve, "reach_ua95": reach,
    }


def ratio(esd: float | None, kscu: float | None) -> float | str:
    """ESD's cost over KSCU's, or why there is no ratio."""
    if esd is None or kscu is None:
        missing = [name for name, cost in (("ESD", esd), ("KSCU", kscu)) if cost is None]
        return "not reached by " + " or ".join(missing)
    if kscu <= 0:
        return "the base already has UA >= 0.95" if esd <= 0 else "KSCU at no cost (base already erased?)"
    return esd / kscu


def plot(summaries: dict, concepts: list[str], args) -> None:
    fig, axes = figure(len(concepts), 3)
    colours = {"kscu": "tab:blue", "esd": "tab:orange"}
    for row, concept in enumerate(concepts):
        for method in METHODS:
            curve = summaries[concept, method]["curve"]
            x_it, x_s = [p["iteration"] for p in curve], [p["seconds"] for p in curve]
            label = method.upper()
            axes[row, 0].plot(x_it, [p["ua"] for p in curve], "o-", color=colours[method], label=label)
            axes[row, 1].plot(x_s, [p["ua"] for p in curve], "o-", color=colours[method], label=label)
            axes[row, 2].plot(x_it, [p["ira"] for p in curve], "o-", color=colours[method], label=f"{label} IRA")
            axes[row, 2].plot(x_it, [p["cra_mean"] for p in curve], "s--", color=colours[method], label=f"{label} CRA mean")
        for col, (xlabel, ylabel) in enumerate((("iterations", "UA"), ("wall time (s)", "UA"), ("iterations", "retain accuracy"))):
            axes[row, col].set(xlabel=xlabel, ylabel=ylabel, ylim=(-0.02, 1.02), title=f"{concept}: {ylabel} vs {xlabel}")
            axes[row, col].grid(alpha=0.3)
        for col in (0, 1):
            axes[row, col].axhline(UA_TARGET, color="grey", ls=":", lw=1)
        axes[row, 0].legend(fontsize=7)
        axes[row, 2].legend(fontsize=7)
    save_figure(fig, args, "kscu_vs_esd")


def main() -> None:
    parser = BenchParser(__doc__)
    parser.experiment_options(concepts="striped,star,red", seeds="0,1,2")
    parser.option("--curve-eval", 48, 4, "erase (and retain) prompts per trade-off curve point", int)
    parser.option("--curve-points", "0.25,0.5,0.75,1", "0.5,1", "fractions of the run at which snapshots are scored", floats)
    args = parser.parse()
    model = load_demo(args)

    runs, base = [], {}
    for concept in args.concepts:
        base[concept] = {
            "final": score(model, model.unet, concept, args.n_erase, args.n_retain, args.eval_steps),
            "curve": score(model, model.unet, concept, args.curve_eval, args.curve_eval, args.eval_steps),
        }
        for seed in args.seeds:
            for method, config in configs(concept, seed, args, model.domain).items():
                runs.append(run(model, config, args, base[concept]["curve"]))
                r = runs[-1]
                print(f"{concept} {method} seed {seed}: {r['seconds']:.1f} s, UA {r['final']['ua']:.3f}, IRA {r['final']['ira']:.3f}", flush=True)

    summaries = {(c, m): summarise([r for r in runs if r["concept"] == c and r["method"] == m]) for c in args.concepts for m in METHODS}
    rows = [{"concept": c, "method": "base", "ua": b["final"]["ua"], "ira": b["final"]["ira"], "cra_mean": b["final"]["cra_mean"]} for c, b in base.items()]
    rows += [{**s, "method": s["method"].upper(), "s_to_ua95": s["reach_ua95"]["seconds"], "fwd_to_ua95": s["reach_ua95"]["forwards"]} for s in summaries.values()]
    print(format_table(rows, ["concept", "method", "seeds", "ua", "ira", "cra_mean", "seconds", "unet_forwards", "unet_backwards", "s_to_ua95", "fwd_to_ua95"]))
    ratios = {}
    for c in args.concepts:
        k, e = summaries[c, "kscu"], summaries[c, "esd"]
        ratios[c] = {
            "esd_over_kscu_seconds": e["seconds"] / k["seconds"],
            "esd_over_kscu_forwards": e["unet_forwards"] / k["unet_forwards"],
            "to_ua95_seconds": ratio(e["reach_ua95"]["seconds"], k["reach_ua95"]["seconds"]),
            "to_ua95_forwards": ratio(e["reach_ua95"]["forwards"], k["reach_ua95"]["forwards"]),
        }
        shown = {key: f"{v:.2f}x" if isinstance(v, float) else v for key, v in ratios[c].items()}
        print(f"{c}: ESD / KSCU time {shown['esd_over_kscu_seconds']}, UNet evaluations {shown['esd_over_kscu_forwards']}; "
              f"to reach UA >= {UA_TARGET}: time {shown['to_ua95_seconds']}, evaluations {shown['to_ua95_forwards']}")
    plot(summaries, args.concepts, args)
    write_results(
        args, "kscu_vs_esd",
        {"model": model.source, "model_hash": model.model_hash, "base": base, "runs": runs,
         "summary": list(summaries.values()), "ratios": ratios},
        {"ratios": ratios, "summary": [{k: s[k] for k in ("concept", "method", "ua", "ira", "cra_mean", "seconds")} for s in summaries.values()]},
    )


if __name__ == "__main__":
    main()

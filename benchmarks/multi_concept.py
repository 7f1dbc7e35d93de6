"""Several concepts in one job: each erased concept's UA and what the others keep, against the same
concepts erased by separate jobs applied one after another.

Per concept set and training seed, three ways to erase every concept of the set:
- in_turn: one job (UnlearnConfig.also), each concept's preset window walked in turn;
- interleaved: one job, the concepts' iterations alternating;
- chained: separate single-concept jobs, each trained on the model the previous one left
  (its frozen targets are that model's), the way a user would erase them one by one.
Every erased concept is scored with evaluate_each (its test prompts name none of the other erased
concepts) on the workbench's held-out prompts (100 + 120 by default) against the base on the same
images: UA with its Wilson interval, IRA and each CRA change with Newcombe's paired one. A concept
meets the issue's goal when UA >= 0.9 and IRA and every CRA lose at most 8 points.

Resumable: finished cells are appended to <out>/multi_concept_cells.jsonl and not run again.
Run:   python benchmarks/multi_concept.py [--sets striped+red,star+dotted+dark] [--seeds 0]
Smoke: python benchmarks/multi_concept.py --smoke --model <micro demo folder>
Writes multi_concept.json and multi_concept.png under benchmarks/results/.
"""
from __future__ import annotations

import json
from dataclasses import replace

from _common import BenchParser, figure, format_table, goal_axis, load_demo, save_figure, words, write_results
from kscu.config import UnlearnConfig
from kscu.evaluation import EvalReport, evaluate_each, retention_drops, rows_by_name
from kscu.models import LoadedModel
from kscu.trainer import unlearn

UA_GOAL = 0.9
MAX_DROP = 0.08
VARIANTS = ("in_turn", "interleaved", "chained")


def edited_by(model: LoadedModel, concepts: list[str], variant: str, seed: int, args) -> tuple[object, dict]:
    """The UNet with every concept erased by `variant`, and what training cost (seconds, iterations,
    UNet images forward and backward: the counts do not move with the machine's load, seconds do)."""
    settings = {"num_steps": args.num_steps, "seed": seed}
    if args.iterations is not None:
        settings["iterations"] = args.iterations
    cost = {"seconds": 0.0, "iterations": 0, "unet_forwards": 0, "unet_backwards": 0}

    def add(result) -> None:
        cost.update(seconds=cost["seconds"] + result.seconds, iterations=cost["iterations"] + len(result.losses),
                    unet_forwards=cost["unet_forwards"] + result.unet_forwards, unet_backwards=cost["unet_backwards"] + result.unet_backwards)

    if variant != "chained":
        result = unlearn(model, UnlearnConfig(concepts[0], also=tuple(concepts[1:]), schedule=variant, **settings))
        add(result)
        return result.apply(model), cost
    current = model
    for concept in concepts:
        result = unlearn(current, UnlearnConfig(concept, **settings))
        add(result)
        pipe = type(model.pipe)(**{**model.pipe.components, "unet": result.apply(current)}, requires_safety_checker=False)
        current = replace(current, pipe=pipe)
    return current.unet, cost


def concept_row(base: EvalReport, after: EvalReport) -> dict:
    drops = {name.lower(): drop for name, drop in retention_drops(base.before, after.after).items()}
    worst = max(drops, key=lambda k: drops[k].value)
    ua = rows_by_name(after.after)["UA"].rate
    return {"concept": after.concept, "ua": ua.to_dict(), "drops": {k: d.to_dict() for k, d in drops.items()}, "worst": worst,
            "goal_met": ua.value >= UA_GOAL and all(d.value <= MAX_DROP for d in drops.values())}


def plot(cells: list[dict], sets: list[str], args) -> None:
    """Per concept set: each erased concept's UA against its worst retention change, one colour per variant."""
    fig, axes = figure(1, len(sets))
    for col, name in enumerate(sets):
        ax = axes[0, col]
        for i, variant in enumerate(VARIANTS):
            rows = [r for c in cells if c["set"] == name and c["variant"] == variant for r in c["concepts"]]
            ax.scatter([r["ua"]["value"] for r in rows], [-r["drops"][r["worst"]]["value"] * 100 for r in rows], color=f"C{i}",
                       label=variant)
        goal_axis(ax, UA_GOAL, MAX_DROP, xlabel="UA of each erased concept", ylabel="worst change, points", title=name)
    save_figure(fig, args, "multi_concept")


def main() -> None:
    parser = BenchParser(__doc__)
    parser.option("--sets", "striped+red,star+dotted+dark", "striped+red", "comma list of concept sets, concepts joined by +", words)
    parser.option("--seeds", "0", "0", "comma list of training seeds", lambda t: [int(w) for w in words(t)])
    parser.option("--variants", ",".join(VARIANTS), ",".join(VARIANTS), "comma list of in_turn, interleaved, chained", words)
    parser.training_options()
    parser.evaluation_options()
    args = parser.parse()
    model = load_demo(args)
    store = args.out / f"multi_concept_cells{'_smoke' if args.smoke else ''}.jsonl"
    cells = [json.loads(line) for line in store.read_text().splitlines()] if store.exists() else []
    done = {(c["set"], c["variant"], c["seed"]) for c in cells}
    sizes = {"n_erase": args.n_erase, "n_retain": args.n_retain, "num_steps": args.eval_steps}
    bases = {}  # the unedited model's reports per set, drawn once, only for a set with cells to run
    for variant in args.variants:  # variant by variant: the first variant of every set is measured first
        for name in args.sets:
            concepts = name.split("+")
            measured = [(c, None) for c in concepts]
            for seed in args.seeds:
                if (name, variant, seed) in done:
                    continue
                if name not in bases:
                    bases[name] = evaluate_each(model, None, measured, **sizes)
                unet, cost = edited_by(model, concepts, variant, seed, args)
                reports = evaluate_each(model, unet, measured, bases=bases[name], **sizes)
                rows = [concept_row(b, r) for b, r in zip(bases[name], reports)]
                cells.append({"set": name, "variant": variant, "seed": seed, **cost, "concepts": rows,
                              "goal_met": all(r["goal_met"] for r in rows)})
                seconds = cost["seconds"]
                with store.open("a") as f:
                    f.write(json.dumps(cells[-1]) + "\n")
                print(f"{name} {variant} seed {seed}: {seconds:.0f} s; " + "; ".join(
                    f"{r['concept']} UA {r['ua']['value']:.2f}, worst {r['worst']} {-r['drops'][r['worst']]['value'] * 100:+.1f}"
                    for r in rows), flush=True)
    chosen = [c for c in cells if c["set"] in args.sets and c["seed"] in args.seeds and c["variant"] in args.variants]
    table = [{"set": c["set"], "variant": c["variant"], "seed": c["seed"], "seconds": c["seconds"], "concept": r["concept"],
              "ua": r["ua"]["value"], "ua_low": r["ua"]["low"], "ira_change": -r["drops"]["ira"]["value"], "worst": r["worst"],
              "worst_change": -r["drops"][r["worst"]]["value"], "worst_low": -r["drops"][r["worst"]]["high"],
              "goal": "met" if r["goal_met"] else "missed"} for c in chosen for r in c["concepts"]]
    print(format_table(table, list(table[0]) if table else ["set"]))
    plot(chosen, args.sets, args)
    summary = {f"{c['set']} {c['variant']} seed {c['seed']}": {"seconds": round(c["seconds"], 1), "unet_forwards": c.get("unet_forwards"),
                                                                "goal_met": c["goal_met"]} for c in chosen}
    write_results(args, "multi_concept", {"model": model.source, "model_hash": model.model_hash, "cells": chosen}, {"summary": summary})


if __name__ == "__main__":
    main()

"""Erasure that keeps the rest, on every seed: settings x concepts x training seeds on the demo model.

Each setting is a name and UnlearnConfig fields (`--setting NAME:field=value:field=value`; a field
left out is the preset's; `method=esd` takes the KSCU preset's iterations unless `iterations` is
given, so both methods get the same budget). Every edit is scored on evaluate_edit's prompts and
seeds (100 erase + 120 retain by default) against the base scored once on the same images, so each
change is paired: UA carries its Wilson 95 % interval and every retention drop (IRA and each CRA)
Newcombe's paired one (kscu.stats). A cell meets the goal when UA >= 0.95 and IRA and every CRA
lose at most 5 points (point estimates, as the goal is stated; the intervals are in the table).
Each cell also gets the workbench's verdict (passed / failed / undecided from the intervals, 8-point
bound) on the full sets and on smaller ones (--quick-eval), to see whether they agree.

Resumable: every finished cell is appended to <out>/retention_cells.jsonl and not run again (delete
the file, or use a new --out, after changing the code).

Run:   python benchmarks/retention.py --setting preset: --setting esd:method=esd [--concepts striped,star,red] [--seeds 0,1,2]
Smoke: python benchmarks/retention.py --smoke --model <micro demo folder>   (a few seconds)
Runtime on the 2-core CPU: per KSCU cell 30-60 s of training and 25 s of scoring; ESD 6-7 min.
Writes retention.json and retention.png under benchmarks/results/.
"""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from _common import BenchParser, figure, format_table, goal_axis, kind_of, load_demo, save_figure, score, write_results
from kscu.config import UnlearnConfig
from kscu.evaluation import EvalReport, metric_rows, verdict
from kscu.trainer import unlearn

UA_GOAL = 0.95
MAX_DROP = 0.05


def setting(text: str) -> tuple[str, dict]:
    """'name:field=value:...' -> (name, UnlearnConfig fields); values are parsed like the CLI's."""
    from kscu.config import from_inputs

    name, *parts = text.split(":")
    if not name or any("=" not in p for p in parts if p):
        raise SystemExit(f"{text!r}: a setting is NAME:field=value:field=value, e.g. wide:trajectories=4:iterations=100")
    given = dict(p.split("=", 1) for p in parts if p)
    try:
        request = from_inputs({"concept": "x", **given})
    except Exception as error:  # ConfigError names the field
        raise SystemExit(f"{text!r}: {error}") from None
    return name, {k: getattr(request, k) for k in given}


def config_for(model, concept: str, seed: int, fields: dict, args) -> UnlearnConfig:
    """The setting's config; ESD gets the KSCU preset's iterations unless the setting names them."""
    base = UnlearnConfig(concept, kind_of(concept), num_steps=args.num_steps, seed=seed)
    kscu = replace(base, **{k: v for k, v in fields.items() if k != "method"}).resolve(model.domain)
    if fields.get("method", "kscu") == "esd":
        return replace(kscu, method="esd").resolve(model.domain)
    return kscu


def outcome(base: dict, after: dict, concept: str, n_erase: int, n_retain: int) -> str:
    """The workbench's verdict (passed / failed / undecided, from the intervals) on these readings."""
    report = EvalReport(concept, "", base, after, n_erase, n_retain, 0, 0.0, 0, 0.0)
    return verdict(report).outcome


def cell(model, name: str, concept: str, seed: int, fields: dict, base: dict, args) -> dict:
    cfg = config_for(model, concept, seed, fields, args)
    result = unlearn(model, cfg)
    edited = result.apply(model)
    after = score(model, edited, concept, args.n_erase, args.n_retain, args.eval_steps)
    quick = score(model, edited, concept, args.quick_eval, args.quick_eval, args.eval_steps) if args.quick_eval else None
    before_rows, after_rows = ({row.name: row for row in metric_rows(m)} for m in (base, after))
    drops = {name.lower(): before_rows[name].change(after_rows[name]) for name in ["IRA"] + [f"CRA {g}" for g in base["cra"]]}
    worst = max(drops, key=lambda k: drops[k].value)
    ua = after_rows["UA"].rate
    return {
        "setting": name, "concept": concept, "seed": seed, "config": cfg.to_dict(), "seconds": result.seconds,
        "unet_forwards": result.unet_forwards, "ua": ua.to_dict(), "drops": {k: d.to_dict() for k, d in drops.items()},
        "worst": worst, "ira_by_value": after["ira_by_value"],
        "goal_met": ua.value >= UA_GOAL and all(d.value <= MAX_DROP for d in drops.values()),
        "verdict": outcome(base, after, concept, args.n_erase, args.n_retain),
        "quick_verdict": outcome(base["quick"], quick, concept, args.quick_eval, args.quick_eval) if quick else None,
    }


def plot(cells: list[dict], settings: list[str], concepts: list[str], args) -> None:
    fig, axes = figure(1, len(concepts))
    for col, concept in enumerate(concepts):
        ax = axes[0, col]
        for i, name in enumerate(settings):
            rows = [c for c in cells if c["setting"] == name and c["concept"] == concept]
            worst = [c["drops"][c["worst"]] for c in rows]
            x = [c["ua"]["value"] for c in rows]
            y = [-w["value"] * 100 for w in worst]
            err = [[(w["high"] - w["value"]) * 100 for w in worst], [(w["value"] - w["low"]) * 100 for w in worst]]
            ax.errorbar(x, y, yerr=err, fmt="o", color=f"C{i}", label=name, capsize=2)
        goal_axis(ax, UA_GOAL, MAX_DROP, xlabel="UA", ylabel="worst change, points (95 % paired)", title=concept)
    save_figure(fig, args, "retention")


def main() -> None:
    parser = BenchParser(__doc__)
    parser.add_argument("--setting", action="append", default=None, help="NAME:field=value:... (repeat; default: preset:)")
    parser.experiment_options(concepts="striped,star,red", seeds="0,1,2")
    parser.option("--quick-eval", 48, 4, "erase and retain prompts of a second, smaller verdict (48: Quick erase's earlier sizes; 0: none)", int)
    args = parser.parse()
    settings = [setting(s) for s in (args.setting or ["preset:"])]
    model = load_demo(args)
    store = args.out / f"retention_cells{'_smoke' if args.smoke else ''}.jsonl"
    cells = [json.loads(line) for line in store.read_text().splitlines()] if store.exists() else []
    done = {(c["setting"], c["concept"], c["seed"]) for c in cells}
    base = {c: score(model, model.unet, c, args.n_erase, args.n_retain, args.eval_steps) for c in args.concepts}
    for c in args.concepts:
        base[c]["quick"] = score(model, model.unet, c, args.quick_eval, args.quick_eval, args.eval_steps) if args.quick_eval else None
    for name, fields in settings:
        for concept in args.concepts:
            for seed in args.seeds:
                if (name, concept, seed) in done:
                    continue
                cells.append(cell(model, name, concept, seed, fields, base[concept], args))
                with store.open("a") as f:
                    f.write(json.dumps(cells[-1]) + "\n")
                c = cells[-1]
                print(f"{name} {concept} seed {seed}: {c['seconds']:.0f} s, UA {c['ua']['value']:.3f}, worst {c['worst']} "
                      f"{0.0 - c['drops'][c['worst']]['value'] * 100:+.1f} points, goal {'met' if c['goal_met'] else 'missed'}", flush=True)
    names = [name for name, _ in settings]
    chosen = [c for c in cells if c["setting"] in names and c["concept"] in args.concepts and c["seed"] in args.seeds]
    rows = [{"setting": c["setting"], "concept": c["concept"], "seed": c["seed"], "seconds": c["seconds"],
             "ua": c["ua"]["value"], "ua_low": c["ua"]["low"], "ira_change": 0.0 - c["drops"]["ira"]["value"],
             "worst": c["worst"], "worst_change": 0.0 - c["drops"][c["worst"]]["value"], "worst_low": 0.0 - c["drops"][c["worst"]]["high"],
             "goal": "met" if c["goal_met"] else "missed", "verdict": c["verdict"], "quick_verdict": c["quick_verdict"]} for c in chosen]
    print(format_table(rows, list(rows[0]) if rows else ["setting"]))
    summary = {name: {concept: {"goal_met": sum(c["goal_met"] for c in chosen if c["setting"] == name and c["concept"] == concept),
                                "cells": sum(1 for c in chosen if c["setting"] == name and c["concept"] == concept),
                                "seconds": float(np.mean([c["seconds"] for c in chosen if c["setting"] == name and c["concept"] == concept] or [0]))}
                      for concept in args.concepts} for name in names}
    plot(chosen, names, args.concepts, args)
    write_results(args, "retention", {"model": model.source, "model_hash": model.model_hash,
                                      "base": {c: {k: v for k, v in m.items() if k not in ("hits", "quick")} for c, m in base.items()},
                                      "cells": chosen, "summary": summary}, {"summary": summary})


if __name__ == "__main__":
    main()

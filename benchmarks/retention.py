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

The cells are a kscu.sweep (the same code as `python -m kscu sweep`, which also crosses methods and
windows and runs the cells on Ray): resumable, every finished cell is appended to
<out>/sweep_cells.jsonl and not run again (delete the file, or use a new --out, after changing the
code; stores of earlier versions were named retention_cells.jsonl).

Run:   python benchmarks/retention.py --setting preset: --setting esd:method=esd [--concepts striped,star,red] [--seeds 0,1,2]
Smoke: python benchmarks/retention.py --smoke --model <micro demo folder>   (a few seconds)
Runtime on the 2-core CPU: per KSCU cell 30-60 s of training and 25 s of scoring; ESD 6-7 min.
Writes retention.json and retention.png under benchmarks/results/.
"""
from __future__ import annotations

from _common import BenchParser, format_table, load_demo, save_figure, write_results
from kscu.plots import sweep_figure
from kscu.sweep import Setting, SweepError, SweepPlan, run_sweep

UA_GOAL = 0.95
MAX_DROP = 0.05


def main() -> None:
    parser = BenchParser(__doc__)
    parser.add_argument("--setting", action="append", default=None, help="NAME:field=value:... (repeat; default: preset:)")
    parser.experiment_options(concepts="striped,star,red", seeds="0,1,2")
    parser.option("--quick-eval", 48, 4, "erase and retain prompts of a second, smaller verdict (48: Quick erase's earlier sizes; 0: none)", int)
    args = parser.parse()
    model = load_demo(args)  # the demo world's classifier scores every cell
    try:
        settings = tuple(Setting.parse(s) for s in (args.setting or ["preset:"]))
        plan = SweepPlan(tuple(args.concepts), tuple(args.seeds), settings, model=args.model, num_steps=args.num_steps,
                         iterations=args.iterations, n_erase=args.n_erase, n_retain=args.n_retain, eval_steps=args.eval_steps,
                         quick_eval=args.quick_eval, ua_goal=UA_GOAL, max_drop=MAX_DROP, threads=args.threads or (1 if args.smoke else 2))
    except SweepError as error:
        raise SystemExit(str(error)) from None

    def report(c) -> None:
        worst = c.drops[c.worst]
        print(f"{c.setting} {c.concept} seed {c.seed}: {c.seconds:.0f} s, UA {c.ua.value:.3f}, worst {c.worst} "
              f"{0.0 - worst.value * 100:+.1f} points, goal {'met' if c.goal_met else 'missed'}", flush=True)

    result = run_sweep(plan, args.out, on_cell=report)
    rows = result.rows()
    print(format_table(rows, list(rows[0]) if rows else ["setting"]))
    summary = result.summary()
    save_figure(sweep_figure(result), args, "retention")
    write_results(args, "retention", {"model": model.source, "model_hash": model.model_hash, **result.to_dict()}, {"summary": summary})


if __name__ == "__main__":
    main()

"""The workbench's main path end to end on the embedded demo model, each phase timed:
load the model -> erase a style with the preset (KSCU) -> evaluate (evaluate_edit: the base and
the edit on the same held-out prompts) -> verdict.

Target: the erase phase under 60 s on the 2-core reference machine (2 threads, nothing else
running). Other load on the machine makes every phase slower; the table says how many threads
were used.

Run:   python benchmarks/end_to_end.py [--concept striped]
Smoke: python benchmarks/end_to_end.py --smoke --model <micro demo folder>   (a few seconds)
Runtime on the 2-core CPU with the defaults: about 3 min (erase about 1 min, evaluation of
2 x 220 images about 2 min).
Writes end_to_end.json and end_to_end.png (phase times) under benchmarks/results/ (end_to_end_cuda.*
when it ran on a GPU: the workbench uses CUDA when present).
"""
from __future__ import annotations

import torch

from _common import BenchParser, Timer, figure, format_table, kind_of, load_demo, save_figure, write_results
from kscu.config import UnlearnConfig
from kscu.evaluation import evaluate_edit, format_table as eval_table, verdict
from kscu.trainer import unlearn

ERASE_TARGET_SECONDS = 60.0


def main() -> None:
    parser = BenchParser(__doc__)
    parser.option("--concept", "striped", "striped", "demo-world concept to erase")
    parser.training_options()
    parser.evaluation_options()
    args = parser.parse()
    phases = {}
    with Timer() as t:
        model = load_demo(args)
    phases["load"] = t.seconds
    config = UnlearnConfig(args.concept, kind_of(args.concept), iterations=args.iterations, num_steps=args.num_steps)
    with Timer() as t:
        result = unlearn(model, config)
    phases["erase"] = t.seconds
    with Timer() as t:
        edited = result.apply(model)
    phases["apply"] = t.seconds
    with Timer() as t:
        report = evaluate_edit(model, edited, args.concept, n_erase=args.n_erase, n_retain=args.n_retain, num_steps=args.eval_steps)
    phases["evaluate"] = t.seconds
    checks = verdict(report)

    rows = [{"phase": name, "seconds": seconds} for name, seconds in phases.items()]
    rows.append({"phase": "total", "seconds": sum(phases.values())})
    print(format_table(rows, ["phase", "seconds"]))
    cfg = result.config
    print(f"erase: {cfg.iterations} iterations, window [{cfg.start_step}, {cfg.end_step}) of {cfg.num_steps}, "
          f"{result.unet_forwards} UNet images, {result.unet_backwards} backward passes")
    met = phases["erase"] < ERASE_TARGET_SECONDS
    print(f"target erase < {ERASE_TARGET_SECONDS:.0f} s: {'met' if met else 'missed'} ({phases['erase']:.1f} s, device {model.device}, torch threads: {torch.get_num_threads()})")
    print(eval_table(report))
    print("verdict: " + checks.summary(report.attribute))

    fig, axes = figure(1, 1, width=6.0, height=2.5)
    axes[0, 0].barh(list(phases), list(phases.values()), color="tab:blue")
    axes[0, 0].axvline(ERASE_TARGET_SECONDS, color="tab:red", ls=":", label=f"erase target {ERASE_TARGET_SECONDS:.0f} s")
    axes[0, 0].set(xlabel="seconds", title=f"erase {args.concept!r} end to end")
    axes[0, 0].legend(fontsize=7)
    name = "end_to_end" if model.device.type == "cpu" else f"end_to_end_{model.device.type}"  # CUDA runs keep the CPU figures
    save_figure(fig, args, name)
    write_results(
        args, name,
        {"model": model.source, "model_hash": model.model_hash, "device": str(model.device),
         "phases": phases, "config": cfg.to_dict(), "unet_forwards": result.unet_forwards, "report": report.to_dict(), "verdict": checks.to_dict()},
        {"phases": phases, "erase_target_met": met, "ua": report.after["ua"], "ira": report.after["ira"],
         "cra_mean": report.after["cra_mean"], "verdict": checks.outcome},
    )


if __name__ == "__main__":
    main()

"""LoRA rank against file size and what the edit still does: the preset's edit of each concept and
its rank-r LoRAs (kscu.lora: truncated SVD of each changed layer, biases dropped, exactly what the
file holds) scored on the same 100 + 120 held-out prompts and seeds.

Every LoRA is compared with its full edit on the same images (paired: UA and IRA change with
Newcombe's 95 % interval, kscu.stats; a drop is what the LoRA loses against the full edit). The chosen default is the smallest rank whose UA and IRA are
within 2 points (point estimates) of the full edit's on every concept and seed; kscu.export_formats.
DEFAULT_RANK is that number.

Run:   python benchmarks/lora_rank.py [--concepts striped,star,red] [--seeds 0] [--ranks 1,2,4,8,16,32,64]
Smoke: python benchmarks/lora_rank.py --smoke --model <micro demo folder>   (a few seconds)
Runtime on the 2-core CPU: per concept and seed one training (20-50 s) and 25 s of scoring per rank.
Writes lora_rank.json and lora_rank.png under benchmarks/results/.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from _common import BenchParser, figure, format_table, ints, kind_of, load_demo, save_figure, score, write_results
from kscu.config import UnlearnConfig
from kscu.evaluation import rows_by_name
from kscu.lora import low_rank, max_rank, save_lora
from kscu.trainer import unlearn

MAX_CHANGE = 0.02


def main() -> None:
    parser = BenchParser(__doc__)
    parser.experiment_options(concepts="striped,star,red", seeds="0")
    parser.option("--ranks", "1,2,4,8,16,32,64", "1,2", "comma list of LoRA ranks (those above an edit's largest are skipped)", ints)
    args = parser.parse()
    model = load_demo(args)
    cells = []
    for concept in args.concepts:
        for seed in args.seeds:
            config = UnlearnConfig(concept, kind_of(concept), iterations=args.iterations, num_steps=args.num_steps, seed=seed)
            edit = unlearn(model, config)
            full = rows_by_name(score(model, edit.apply(model), concept, args.n_erase, args.n_retain, args.eval_steps))
            base = rows_by_name(score(model, model.unet, concept, args.n_erase, args.n_retain, args.eval_steps))
            full_bytes = sum(t.numel() * 2 for t in edit.params.values())
            cells.append({"concept": concept, "seed": seed, "rank": "full", "bytes": full_bytes, "ua": full["UA"].rate.value,
                          "ira": full["IRA"].rate.value, "ua_drop": 0.0, "ira_drop": 0.0, "ira_drop_vs_base": base["IRA"].change(full["IRA"]).value})
            for rank in [r for r in args.ranks if r <= max_rank(edit, model)]:
                lora = low_rank(edit, model, rank)
                with tempfile.TemporaryDirectory() as folder:
                    size = save_lora(lora, Path(folder) / "lora.safetensors", "kohya").stat().st_size
                after = rows_by_name(score(model, lora.as_edit(model).apply(model), concept, args.n_erase, args.n_retain, args.eval_steps))
                ua, ira = full["UA"].change(after["UA"]), full["IRA"].change(after["IRA"])
                cells.append({"concept": concept, "seed": seed, "rank": rank, "bytes": size, "ua": after["UA"].rate.value,
                              "ira": after["IRA"].rate.value, "ua_drop": ua.value, "ua_drop_interval": ua.interval,
                              "ira_drop": ira.value, "ira_drop_interval": ira.interval,
                              "ira_drop_vs_base": base["IRA"].change(after["IRA"]).value})
                print(f"{concept} seed {seed} rank {rank}: {size / 1024:.0f} KiB, UA {after['UA'].rate.value:.2f} "
                      f"(lost {ua.value * 100:+.1f}), IRA {after['IRA'].rate.value:.3f} (lost {ira.value * 100:+.1f})", flush=True)
    ranks = sorted({c["rank"] for c in cells if c["rank"] != "full"})
    within = [r for r in ranks if all(abs(c["ua_drop"]) <= MAX_CHANGE and abs(c["ira_drop"]) <= MAX_CHANGE
                                      for c in cells if c["rank"] == r)]
    chosen = next((r for r in ranks if all(q in within for q in ranks if q >= r)), None)
    print(format_table(cells, ["concept", "seed", "rank", "bytes", "ua", "ira", "ua_drop", "ira_drop", "ira_drop_vs_base"]))
    fig, axes = figure(1, 2)
    for i, concept in enumerate(args.concepts):
        rows = [c for c in cells if c["concept"] == concept and c["rank"] != "full"]
        for ax, key in zip(axes[0], ("ua_drop", "ira_drop")):
            ax.plot([c["rank"] for c in rows], [c[key] * 100 for c in rows], "o-", color=f"C{i}", label=concept)
    for ax, name in zip(axes[0], ("UA", "IRA")):
        ax.axhspan(-MAX_CHANGE * 100, MAX_CHANGE * 100, color="grey", alpha=0.15)
        ax.set(xscale="log", xlabel="LoRA rank", ylabel=f"{name} lost vs the full edit, points", title=f"{name}: LoRA vs full edit")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, args, "lora_rank")
    write_results(args, "lora_rank", {"cells": cells, "chosen_rank": chosen, "max_change": MAX_CHANGE},
                  {"chosen_rank": chosen, "ranks_within": within})


if __name__ == "__main__":
    main()

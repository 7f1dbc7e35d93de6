"""Does unlearning on a GPU in half precision give the edit float32 gives? (needs CUDA)

Erases a style from the embedded demo model with its preset on CUDA four ways: float32 weights;
float16 weights with the trainer's float32 tuned copy under autocast and loss scaling (what
load_model gives real SD on a GPU); the same without loss scaling (GradScaler disabled here, to
show what the scaling is for); and bfloat16. For each: wall time, the share of trainable
gradient entries that are exactly zero at the first iteration, how far the edit's parameter
change is from float32's (relative L2 distance and cosine), and UA / IRA / CRA from
evaluate_edit (the base scored in the same dtype).

Why: the trainer keeps float32 master weights, but with fp16 autocast the backward pass runs in
fp16, where an MSE over a whole latent has per-element gradients near 1e-5 that can underflow.

Measured on one H200 (2026-11-26, two runs, benchmarks/results/cuda_h200_2026-11-26.log): float16
with loss scaling lands 2.8-2.9 % (relative L2) from float32's parameter change, cosine 1.000, same
UA / CRA; without it 2.0 % of the first iteration's gradient entries were exactly zero and the
change was 27.6 % away (cosine 0.961); bfloat16 20.5 % (cosine 0.979).

Run: python scripts/cuda_precision.py [--concept striped] [--out FOLDER]   (about 2.5 min on one
H200: the tiny model is launch-bound on a GPU; refuses to run without CUDA)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kscu import trainer  # noqa: E402
from kscu.config import UnlearnConfig  # noqa: E402
from kscu.evaluation import evaluate_edit  # noqa: E402
from kscu.models import load_model  # noqa: E402

VARIANTS = {"float32": (torch.float32, True), "float16": (torch.float16, True),
            "float16-unscaled": (torch.float16, False), "bfloat16": (torch.bfloat16, True)}


class _UnscaledGradScaler(torch.amp.GradScaler):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{**kwargs, "enabled": False})


def run(concept: str, kind: str, dtype: torch.dtype, scaled: bool) -> tuple[dict, dict]:
    model = load_model(None, device="cuda", dtype=dtype)
    zero_share: list[float] = []

    def first_grads(progress, tuned) -> None:  # called after optimizer.step: grads are still set
        if progress.iteration == 1:
            grads = [p.grad for p in tuned.parameters() if p.requires_grad and p.grad is not None]
            zero_share.append(float(sum((g == 0).sum().item() for g in grads) / sum(g.numel() for g in grads)))

    original = trainer.torch.amp.GradScaler
    if not scaled:
        trainer.torch.amp.GradScaler = _UnscaledGradScaler
    try:
        torch.cuda.synchronize()
        start = time.perf_counter()
        result = trainer.unlearn(model, UnlearnConfig(concept, kind), on_progress=first_grads)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    finally:
        trainer.torch.amp.GradScaler = original
    report = evaluate_edit(model, result.apply(model), concept)
    base = dict(model.unet.named_parameters())
    delta = {k: v.float() - base[k].detach().float().cpu() for k, v in result.params.items()}
    return delta, {"seconds": seconds, "zero_grad_share_first_iteration": zero_share[0] if zero_share else None,
                   "final_loss": result.losses[-1], "before": report.before, "after": report.after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concept", default="striped")
    parser.add_argument("--kind", default="style")
    parser.add_argument("--out", type=Path, default=Path("runs/cuda_precision"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("this check needs a CUDA GPU")
    args.out.mkdir(parents=True, exist_ok=True)
    rows, reference = {}, None
    for name, (dtype, scaled) in VARIANTS.items():
        delta, row = run(args.concept, args.kind, dtype, scaled)
        if reference is None:
            reference = delta
        diff = sum(((delta[k] - reference[k]) ** 2).sum() for k in delta) ** 0.5
        norm = sum((reference[k] ** 2).sum() for k in reference) ** 0.5
        dot = sum((delta[k] * reference[k]).sum() for k in delta)
        own = sum((delta[k] ** 2).sum() for k in delta) ** 0.5
        row.update(delta_relative_distance=float(diff / norm), delta_cosine=float(dot / (own * norm)))
        rows[name] = row
        after, before = row["after"], row["before"]
        print(f"{name:17s} {row['seconds']:6.1f} s  zero grads {row['zero_grad_share_first_iteration']:.3f}  "
              f"delta vs fp32: dist {row['delta_relative_distance']:.3f} cos {row['delta_cosine']:.3f}  "
              f"detection {before['detection_rate']:.3f}->{after['detection_rate']:.3f}  IRA {before['ira']:.3f}->{after['ira']:.3f}  "
              f"CRA {before['cra_mean']:.3f}->{after['cra_mean']:.3f}", flush=True)
        # written after every variant, so a run stopped early keeps what it measured
        (args.out / "cuda_precision.json").write_text(json.dumps({"device": torch.cuda.get_device_name(), "concept": args.concept, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

"""What KSCU and ESD cost at the real Stable Diffusion 1.4 size, without downloading it.

The SD1.4 UNet (860 M parameters) and CLIP ViT-L text encoder architectures with random weights
(kscu.sd_configs.random_sd1_pipeline("full")): cost does not depend on the weights. On each
device (the CPU, and CUDA when present, under fp16 or bf16 autocast as the trainer does), with
the authors' presets (style: S = 24 of 50, cross-attention only; object: S = 14, all but
cross-attention; lr 1e-5; prompt augmentation off, it only runs in the last 5 %):
- KSCU for --kscu-iterations iterations through kscu.trainer.unlearn, timed per iteration with
  on_progress: the first samples x_S from noise (2 S UNet images), the later ones advance the
  trajectory one step (trajectory reuse, 2 images): "first" and "steady" rows.
- ESD for --esd-iterations iterations (x_k from noise at a uniform k every time).
- Projected wall time of the authors' runs (KSCU 500 iterations for a style, 750 for an object;
  ESD 1000), from the exact UNet-image count of each table (benchmarks/_common.py cost_model) and
  two measured constants: seconds per sampling UNet image (from first vs steady KSCU
  iterations) and seconds of the rest of an iteration (targets, prediction, backward, Adam).
- FLOPs: torch.utils.flop_counter.FlopCounterMode counts one UNet forward at batch 1 (matmuls,
  convolutions, attention; elementwise work is not counted). Assumptions: an iteration does
  (sampling + target + prediction images) forwards and a backward of 2 x the prediction
  forwards (activation and weight gradients; with only cross-attention trainable this is an
  upper bound, the weight-gradient half mostly skipped). FLOP-bound time = FLOPs / the peak
  throughput of a large torch.matmul measured here in the compute dtype; the ratio measured /
  FLOP-bound says how far from the matmul roofline the iteration runs.

--resolution is the latent size: 64 = 512 px, SD1.4's resolution (default). On a CPU, use
--resolution 32 (256 px, about 4x less work) to keep the run tractable: a 512 px iteration
that samples 24 steps is about 50 UNet forwards of ~0.8 TFLOP each.

Run:   python benchmarks/sd14_scale.py --resolution 32 --threads 2    (CPU)
       python benchmarks/sd14_scale.py --devices cuda    (GPU; kinds style and object by default there)
Smoke: python benchmarks/sd14_scale.py --smoke    (the tiny SD1 architecture, a few seconds)
Runtime: 2-core CPU at --resolution 32 about 15 min, at 64 about 1 h (estimates), with 9.3 GB
peak RSS for the style kind (measured at 32); one H200, style and object at 64, 6 KSCU and 3 ESD
iterations each: about 70 s per dtype with 18.4 GB peak GPU memory for the object kind (measured
2026-11-26; the object kind trains all but cross-attention, CUDA only in practice).
Writes sd14_scale_<devices>_<resolution>[_<cuda dtype>].json and .png under benchmarks/results/.
"""
from __future__ import annotations

import resource
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from _common import BenchParser, Timer, checked_forwards, cost_model, figure, format_table, save_figure, words, write_results
from kscu.config import UnlearnConfig
from kscu.domain import build_domain
from kscu.keysteps import PAPER_ESD_ITERATIONS, PAPER_PRESETS
from kscu.models import LoadedModel
from kscu.sampling import encode_prompts
from kscu.sd_configs import random_sd1_pipeline
from kscu.trainer import unlearn

CONCEPTS = {"style": "Van Gogh", "object": "parachute", "nudity": "nudity", "instance": "a famous person"}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_matmul(device: torch.device, dtype: torch.dtype, n: int, seconds: float) -> float:
    """FLOP/s of n x n matmuls in `dtype` (2 n^3 each), timed for about `seconds` after a warm-up."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    torch.matmul(a, b)
    sync(device)
    reps, start, elapsed = 0, time.perf_counter(), 0.0
    while elapsed < seconds:
        for _ in range(4):
            torch.matmul(a, b)
        sync(device)
        reps += 4
        elapsed = time.perf_counter() - start
    return 2 * n**3 * reps / elapsed


def forward_flops(model: LoadedModel, resolution: int) -> int:
    """FLOPs of one UNet forward at batch 1 (77-token text context), as FlopCounterMode counts them."""
    unet = model.unet
    x = torch.randn(1, unet.config.in_channels, resolution, resolution, device=model.device, dtype=model.dtype)
    context = encode_prompts(model, ["a painting"])
    with FlopCounterMode(display=False) as counter, torch.no_grad(), model.autocast():
        unet(x, torch.tensor(500, device=model.device), encoder_hidden_states=context)
    return counter.get_total_flops()


def measure(model: LoadedModel, config: UnlearnConfig) -> dict:
    """Run `config`; seconds and UNet images per iteration, setup time and peak memory."""
    elapsed: list[float] = []
    if model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(model.device)
    with Timer() as t:
        result = unlearn(model, config, on_progress=lambda p: elapsed.append(p.elapsed))
    cost = cost_model(result.config, model.domain)
    checked_forwards(result, model.domain)
    memory = torch.cuda.max_memory_allocated(model.device) if model.device.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "config": result.config.to_dict(), "steps": result.steps, "seconds": np.diff([0.0, *elapsed]).tolist(),
        "sampling_images": cost.sampling, "targets": cost.targets, "predictions": cost.predictions,
        "setup_seconds": t.seconds - result.seconds, "peak_memory_gb": memory / 2**30,
        "peak_memory_kind": "torch.cuda.max_memory_allocated" if model.device.type == "cuda" else "process peak RSS",
    }


def iteration_flops(flops: int, sampling: int, targets: int, predictions: int) -> float:
    """Forward FLOPs of every UNet image of the iteration plus a backward of 2x the predictions."""
    return flops * (sampling + targets + predictions + 2 * predictions)


def device_rows(device: str, kind: str, kscu: dict, esd: dict, flops: int, peak: float) -> tuple[list[dict], dict]:
    """Rows of measured iterations (first / steady KSCU, each ESD) and the fitted time constants."""
    t, s = kscu["seconds"], kscu["sampling_images"]
    steady = float(np.mean(t[1:]))
    per_image = (t[0] - steady) / (s[0] - s[1])  # seconds per sampling UNet image (no gradient)
    rest_kscu = steady - per_image * s[1]
    rest_esd = float(np.mean([te - per_image * se for te, se in zip(esd["seconds"], esd["sampling_images"])]))
    picks = [("kscu first (noise -> S)", kscu, 0, t[0]), ("kscu steady (reuse)", kscu, 1, steady)]
    picks += [(f"esd (k = {k})", esd, i, esd["seconds"][i]) for i, k in enumerate(esd["steps"])]
    rows = []
    for name, run, i, seconds in picks:
        images = run["sampling_images"][i] + run["targets"][i] + run["predictions"]
        f = iteration_flops(flops, run["sampling_images"][i], run["targets"][i], run["predictions"])
        rows.append({"device": device, "kind": kind, "iteration": name, "seconds": seconds, "it_per_s": 1 / seconds, "unet_images": images,
                     "tflop": f / 1e12, "flop_bound_s": f / peak, "measured_over_bound": seconds * peak / f, "peak_memory_gb": run["peak_memory_gb"]})
    return rows, {"seconds_per_sampling_image": per_image, "rest_kscu": rest_kscu, "rest_esd": rest_esd}


def projections(device: str, kind: str, fit: dict, flops: int, peak: float) -> list[dict]:
    """The authors' runs (KSCU preset iterations, ESD 1000) timed with the fitted constants."""
    rows = []
    for method, iterations, rest in (("kscu", PAPER_PRESETS[kind].iterations, fit["rest_kscu"]), ("esd", PAPER_ESD_ITERATIONS, fit["rest_esd"])):
        cost = cost_model(UnlearnConfig(CONCEPTS[kind], kind, method, iterations=iterations, augment=False), build_domain("sd1"))
        seconds = fit["seconds_per_sampling_image"] * sum(cost.sampling) + rest * iterations
        f = sum(iteration_flops(flops, s, t, cost.predictions) for s, t in zip(cost.sampling, cost.targets))
        rows.append({"device": device, "run": f"{method.upper()} {kind} ({PAPER_PRESETS[kind].params})", "iterations": iterations,
                     "unet_images": sum(cost.per_iteration()), "projected_s": seconds, "projected_h": seconds / 3600, "flop_bound_s": f / peak})
    return rows


def measured_figure(measured: list[dict], title: str):
    """Measured against FLOP-bound seconds per iteration, one pair of bars per measured row."""
    fig, axes = figure(1, 1, width=max(7.0, 0.75 * len(measured)), height=3.6)
    x = np.arange(len(measured))
    axes[0, 0].bar(x - 0.2, [r["seconds"] for r in measured], 0.4, label="measured")
    axes[0, 0].bar(x + 0.2, [r["flop_bound_s"] for r in measured], 0.4, label="FLOP-bound (peak matmul)")
    axes[0, 0].set_xticks(x, [f"{r['device']} {r['kind']}: {r['iteration']}" for r in measured], fontsize=7, rotation=30, ha="right")
    axes[0, 0].set(yscale="log", ylabel="seconds per iteration", title=title)
    axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, never over them
    return fig


def main() -> None:
    parser = BenchParser(__doc__, model=False)
    parser.option("--scale", "full", "tiny", "SD1 architecture size: full (SD1.4) or tiny (plumbing)")
    parser.option("--resolution", 64, 8, "latent size (64 = 512 px; 32 keeps a CPU run tractable)", int)
    parser.option("--devices", "cpu,cuda" if torch.cuda.is_available() else "cpu", "cpu", "comma list of devices", words)
    parser.option("--cuda-dtype", "fp16", "fp16", "autocast dtype on CUDA: fp16 or bf16")
    parser.option("--kinds", "style,object" if torch.cuda.is_available() else "style", "style",
                  "comma list of concept kinds (presets): style, object, nudity, instance", words)
    parser.option("--kscu-iterations", 3, 2, "KSCU iterations timed (>= 2: the first samples from noise, the rest reuse)", int)
    parser.option("--esd-iterations", 1, 1, "ESD iterations timed", int)
    parser.option("--matmul-size", None, 256, "n of the n x n peak matmul (None: 2048 on CPU, 8192 on CUDA)", int)
    parser.option("--matmul-seconds", 2.0, 0.2, "seconds the peak matmul is timed", float)
    args = parser.parse()
    if args.kscu_iterations < 2:
        parser.error("--kscu-iterations must be at least 2 (first and steady-state iterations)")
    pipe = random_sd1_pipeline(args.scale)
    pipe.unet.register_to_config(sample_size=args.resolution)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)
    measured, projected, devices = [], [], {}
    for name in args.devices:
        device = torch.device(name)
        dtype = DTYPES[args.cuda_dtype] if device.type == "cuda" else torch.float32
        pipe.to(device)
        if dtype != torch.float32:
            pipe.to(dtype=dtype)
        model = LoadedModel(pipe, f"random-sd1.4-{args.scale}", build_domain("sd1"), device, dtype, "random")
        peak = peak_matmul(device, dtype, args.matmul_size or (8192 if device.type == "cuda" else 2048), args.matmul_seconds)
        flops = forward_flops(model, args.resolution)
        devices[name] = {"dtype": str(dtype), "peak_matmul_tflops": peak / 1e12, "unet_forward_gflop": flops / 1e9,
                         "name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "runs": {}}
        print(f"{name}: peak matmul {peak / 1e9:.4g} GFLOP/s ({dtype}), UNet forward {flops / 1e9:.4g} GFLOP at {args.resolution}x{args.resolution} latents", flush=True)
        for kind in args.kinds:
            kscu = UnlearnConfig(CONCEPTS[kind], kind, "kscu", iterations=args.kscu_iterations, augment=False)
            esd = UnlearnConfig(CONCEPTS[kind], kind, "esd", iterations=args.esd_iterations, augment=False)
            if device.type == "cuda":  # first CUDA calls pay for kernel selection and allocation
                unlearn(model, UnlearnConfig(CONCEPTS[kind], kind, "kscu", iterations=1, augment=False))
            runs = {"kscu": measure(model, kscu), "esd": measure(model, esd)}
            rows, fit = device_rows(name, kind, runs["kscu"], runs["esd"], flops, peak)
            measured += rows
            projected += projections(name, kind, fit, flops, peak)
            devices[name]["runs"][kind] = {**runs, "fit": fit}
            print(f"{name} {kind}: first {runs['kscu']['seconds'][0]:.2f} s, steady {rows[1]['seconds']:.3f} s per iteration", flush=True)
    print(format_table(measured, ["device", "kind", "iteration", "seconds", "it_per_s", "unet_images", "tflop", "flop_bound_s", "measured_over_bound", "peak_memory_gb"]))
    print(format_table(projected, ["device", "run", "iterations", "unet_images", "projected_s", "projected_h", "flop_bound_s"]))

    cuda_dtype = args.cuda_dtype if "cuda" in args.devices else None  # CPU runs are float32: no suffix
    name = f"sd14_scale_{'_'.join(args.devices)}_{args.resolution}" + (f"_{cuda_dtype}" if cuda_dtype else "")
    title = f"SD1.4 architecture ({args.scale}), {args.resolution}x{args.resolution} latents" + (f", {cuda_dtype}" if cuda_dtype else "")
    save_figure(measured_figure(measured, title), args, name)
    write_results(
        args, name,
        {"devices": devices, "measured": measured, "projected": projected},
        {"measured": [{k: r[k] for k in ("device", "kind", "iteration", "seconds", "measured_over_bound")} for r in measured],
         "projected": [{k: r[k] for k in ("device", "run", "projected_s")} for r in projected]},
    )


if __name__ == "__main__":
    main()

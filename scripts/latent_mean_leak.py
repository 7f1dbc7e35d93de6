"""Does a demo model take the background and colour from its prompt, or from the starting noise?

Samples the same held-out prompts twice: from plain Gaussian noise (how every image is made), and
from noise that carries the per-image channel means of the real images' latents at the first
step's noise level (sqrt(alpha_bar) * mean, the part of x_T a model can read when the schedule
keeps signal at its last timestep). A model that learned to read those means from x_T scores far
better on the second; one that follows its prompt scores the same on both.

Why this exists: it is the diagnosis behind training the demo model with offset noise. Measured
with the defaults (100 prompts, shape / colour / style / background), 2026-11-26:
- step 4,400, trained without offset noise: plain noise 0.70 / 0.50 / 0.55 / 0.54, with the
  means injected 0.90 / 0.81 / 0.74 / 0.87: the model read background and colour from x_T;
- the shipped model (offset noise from step 4,400, 10,000 steps): 0.99 / 1.00 / 0.88 / 1.00 both
  ways: it takes them from the prompt.

Run: python scripts/latent_mean_leak.py [--model FOLDER] [--n 100]   (about a minute on 2 cores)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kscu.demo.classifier import to_tensor  # noqa: E402
from kscu.demo.prompts import HELD_OUT_TEMPLATES, prompt_for  # noqa: E402
from kscu.demo.world import ATTRIBUTES, Scene, generate  # noqa: E402
from kscu.models import load_model  # noqa: E402
from kscu.sampling import Sampler, encode_prompts  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="demo model folder (default: the shipped one)")
    parser.add_argument("--n", type=int, default=100, help="prompts (each with the image it describes)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = load_model(args.model, device="cpu")
    images, labels, _ = generate(args.n, seed=4242)
    scenes = [Scene(*(ATTRIBUTES[a][v] for a, v in zip(ATTRIBUTES, row))) for row in labels]
    prompts = [prompt_for(s, HELD_OUT_TEMPLATES[i % 2]) for i, s in enumerate(scenes)]
    sampler = Sampler(model, 25, 3.0)
    vae = model.vae
    with torch.no_grad():
        latents = vae.encode(to_tensor(images)).latent_dist.mode() * vae.config.scaling_factor
        cond = encode_prompts(model, prompts)
    alpha_bar = sampler.scheduler.alphas_cumprod[sampler.timesteps[0]]
    noise = sampler.initial_latents(list(range(args.n)))
    means = latents.mean(dim=(2, 3), keepdim=True)
    print(f"first timestep {int(sampler.timesteps[0])}, alpha_bar {float(alpha_bar):.4f}; "
          f"per-image channel-mean std of the latents {[round(float(v), 3) for v in means.std(0).flatten()]}")
    starts = {"plain noise": noise, "noise + image means": alpha_bar.sqrt() * means + (1 - alpha_bar).sqrt() * noise}
    for name, x_start in starts.items():
        with torch.no_grad():
            x = torch.cat([sampler.run(model.unet, x_start[i : i + 50], cond[i : i + 50]) for i in range(0, args.n, 50)])
        predictions = model.classifier.predict(to_tensor(sampler.decode(x)))
        scores = " / ".join(f"{a} {np.mean(predictions[a] == labels[:, i]):.2f}" for i, a in enumerate(ATTRIBUTES))
        print(f"{name:<20} {scores}")


if __name__ == "__main__":
    main()

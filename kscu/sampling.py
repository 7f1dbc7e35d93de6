"""DDIM sampling shared by the trainer, the influence curves and the evaluation.

Why our own loop rather than calling the pipeline: KSCU needs to stop a trajectory at step k,
advance it one step at a time with a UNet that is being tuned, and switch prompts per step
(causal influence). A diffusers DDIMScheduler does the arithmetic; this module only wires it,
the way a pipeline's __call__ does, with every UNet passed in explicitly so the frozen base
and the edited copy can be compared on the same seeds.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np
import torch
from diffusers import DDIMScheduler

from kscu.models import LoadedModel

PromptSchedule = Callable[[int], torch.Tensor]
"""Step index k -> conditional text embeddings to use at that step."""


TOKENIZER_LOCK = threading.Lock()
"""A fast tokenizer sets its padding and truncation state on every call, shared by all threads:
two threads tokenizing at once (Quick erase trains while it draws the base images) can mix one
call's padding with the other's and fail ("expected sequence of length 14 ... got 13", seen once in
30 soak jobs). Every tokenizer call in kscu goes through this lock."""


def token_count(model: LoadedModel, text: str) -> int:
    """Tokens of `text` with the start and end tokens, untruncated."""
    with TOKENIZER_LOCK:
        return len(model.tokenizer(text, truncation=False, verbose=False).input_ids)


def encode_prompts(model: LoadedModel, prompts: list[str]) -> torch.Tensor:
    """Text embeddings (N, L, D) for prompts, padded to the tokenizer's length as SD does."""
    with TOKENIZER_LOCK:
        tokens = model.tokenizer(
            prompts, padding="max_length", max_length=model.tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(model.device)
    with torch.no_grad():
        return model.text_encoder(tokens)[0].to(model.dtype)


class Sampler:
    """A DDIM schedule of `num_steps` steps (index 0 = noisiest) with classifier-free guidance."""

    def __init__(self, model: LoadedModel, num_steps: int = 50, guidance: float = 3.0) -> None:
        self.model = model
        self.num_steps = num_steps
        self.guidance = guidance
        self.scheduler = DDIMScheduler.from_config(
            model.pipe.scheduler.config, clip_sample=False, set_alpha_to_one=False, prediction_type="epsilon"
        )
        self.scheduler.set_timesteps(num_steps)
        self.timesteps = self.scheduler.timesteps.to(model.device)
        self._empty: torch.Tensor | None = None

    @property
    def empty(self) -> torch.Tensor:
        """Embedding of the empty prompt (cached: it is used at every guided step)."""
        if self._empty is None:
            self._empty = encode_prompts(self.model, [""])
        return self._empty

    def initial_latents(self, seeds: list[int]) -> torch.Tensor:
        """One noise tensor per seed, independent of batch composition (same seed, same image)."""
        unet = self.model.unet
        shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
        noise = [torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        return torch.stack(noise).to(self.model.device, self.model.dtype) * self.scheduler.init_noise_sigma

    def guided_eps(self, unet, x: torch.Tensor, k: int, cond: torch.Tensor) -> torch.Tensor:
        """eps_uncond + g * (eps_cond - eps_uncond) at step index k, one batched UNet call."""
        t = self.timesteps[k]
        uncond = self.empty.expand(len(x), -1, -1)
        cond = cond.expand(len(x), -1, -1) if len(cond) == 1 else cond
        eps = unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
        eps_uncond, eps_cond = eps.chunk(2)
        return eps_uncond + self.guidance * (eps_cond - eps_uncond)

    def step(self, unet, x: torch.Tensor, k: int, cond: torch.Tensor) -> torch.Tensor:
        """Advance latents from step index k to k + 1."""
        eps = self.guided_eps(unet, x, k, cond)
        return self.scheduler.step(eps, self.timesteps[k], x).prev_sample

    def run(self, unet, x: torch.Tensor, cond: torch.Tensor | PromptSchedule, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Run steps start..stop-1; `cond` is fixed embeddings or a per-step schedule."""
        stop = self.num_steps if stop is None else stop
        for k in range(start, stop):
            x = self.step(unet, x, k, cond(k) if callable(cond) else cond)
        return x

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Latents -> uint8 images (N, H, W, 3)."""
        vae = self.model.vae
        images = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
        images = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return images.permute(0, 2, 3, 1).cpu().numpy()

    @torch.no_grad()
    def generate(self, unet, prompts: list[str], seeds: list[int], batch_size: int = 16) -> np.ndarray:
        """Images for (prompt, seed) pairs with `unet` (the base one or an edited copy)."""
        out = []
        for i in range(0, len(prompts), batch_size):
            out.append(self.generate_from(unet, encode_prompts(self.model, prompts[i : i + batch_size]), seeds[i : i + batch_size]))
        return np.concatenate(out) if out else np.zeros((0, 0, 0, 3), np.uint8)

    @torch.no_grad()
    def generate_from(self, unet, cond: torch.Tensor, seeds: list[int], batch_size: int = 16) -> np.ndarray:
        """Images for given text embeddings (one per seed, or one (1, L, D) for every seed): the red
        team's learned conditionings are not prompts."""
        out = []
        for i in range(0, len(seeds), batch_size):
            part = cond[i : i + batch_size] if len(cond) > 1 else cond
            out.append(self.decode(self.run(unet, self.initial_latents(seeds[i : i + batch_size]), part)))
        return np.concatenate(out)

"""A cheap check after training: does the edited model still work on prompts that do not name the
erased concept?

Why this measure: an edit is meant to change what the model does for one concept and little else,
so on other prompts the edited UNet's noise prediction should stay close to the unedited one's.
A destroyed model (weights driven far off by too large a learning rate) predicts something else
entirely, which shows as a relative change near or above 1. The check needs no judge, so it works
on any model, and it needs no image decoding: a few guided trajectories of the unedited model, then
one conditional prediction of each UNet at a few of their latents. The prompts are the model
domain's neutral prompts (Domain.neutral_prompts).

    change = mean over prompts p and probed steps k of ||eps_edit(x_k, p) - eps_base(x_k, p)|| / ||eps_base(x_k, p)||

The edit is flagged when change > MAX_CHANGE. Measured on the demo model, "striped"
(`python benchmarks/safety_checks.py`, 2 threads): the style preset's edit 0.057; lr 3e-3 and 1e-2
for 40 iterations of cross-attention 0.055 and 0.164; lr 1e-2 for 40 iterations of the full UNet
1.17 (flagged). A one-thread run gave 0.150 and 1.33 for the last two: the figures move by about
10% with the thread count, far less than the gap the limit sits in.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from kscu.models import LoadedModel
from kscu.sampling import Sampler, encode_prompts

MAX_CHANGE = 0.5
"""Largest mean relative change of the noise prediction on other prompts before an edit is flagged."""
NUM_STEPS = 10
"""DDIM steps of the unedited model's trajectories."""
PROBED_STEPS = (2, 5, 8)
"""Step indices of those trajectories where both UNets are compared (early, middle, late)."""


@dataclass(frozen=True)
class SanityReport:
    """How far the edit moved the model on prompts that do not name the concept."""

    change: float
    prompts: tuple[str, ...]
    limit: float = MAX_CHANGE

    @property
    def passed(self) -> bool:
        return math.isfinite(self.change) and self.change <= self.limit

    @property
    def message(self) -> str:
        measured = f"the noise prediction on {len(self.prompts)} prompts that do not name the concept changed by {self.change:.0%}"
        if self.passed:
            return f"sanity check passed: {measured} (limit {self.limit:.0%})"
        return (f"sanity check FAILED: {measured} (limit {self.limit:.0%}): the edit has damaged the model beyond the concept; "
                "lower the learning rate or the iterations and run again")

    def to_dict(self) -> dict:
        return {**asdict(self), "prompts": list(self.prompts), "passed": self.passed}

    @classmethod
    def from_dict(cls, data: dict) -> "SanityReport":
        return cls(float(data["change"]), tuple(data["prompts"]), float(data.get("limit", MAX_CHANGE)))


def neutral_prompts(model: LoadedModel, concepts: Sequence[str]) -> list[str]:
    """The domain's neutral prompts of the first concept; with several, those of each concept in
    turn that name none of them, as many as one concept has."""
    first = model.domain.neutral_prompts(concepts[0])
    if len(concepts) == 1:
        return first
    named = re.compile(r"\b(" + "|".join(re.escape(c.strip()) for c in concepts) + r")\b", re.IGNORECASE)
    pool = [p for c in concepts for p in model.domain.neutral_prompts(c) if not named.search(p)]
    if not pool:
        raise ValueError(f"every neutral prompt names one of {', '.join(concepts)}: nothing left to check the edit on")
    return pool[: len(first)]


@torch.no_grad()
def sanity_check(model: LoadedModel, edited_unet, concept: str, guidance: float = 3.0, seed: int = 0,
                 also: Sequence[str] = ()) -> SanityReport:
    """Compare the edited UNet with the unedited one on neutral prompts (see the module docstring).
    also: further concepts the edit erased; the prompts name none of them (a change there is the
    edit working, not damage)."""
    prompts = neutral_prompts(model, (concept, *also))
    sampler = Sampler(model, NUM_STEPS, guidance)
    cond = encode_prompts(model, prompts)
    x = sampler.initial_latents([seed + i for i in range(len(prompts))])
    ratios: list[float] = []
    with model.autocast():
        for k in range(max(PROBED_STEPS) + 1):
            if k in PROBED_STEPS:
                t = sampler.timesteps[k]
                base = model.unet(x, t, encoder_hidden_states=cond).sample.float()
                edited = edited_unet(x.to(next(edited_unet.parameters()).dtype), t, encoder_hidden_states=cond).sample.float()
                per_prompt = (edited - base).flatten(1).norm(dim=1) / base.flatten(1).norm(dim=1).clamp_min(1e-8)
                ratios += per_prompt.tolist()
            x = sampler.step(model.unet, x, k, cond)
    return SanityReport(sum(ratios) / len(ratios), tuple(prompts))

"""Where the trainer's x_k come from: one row per trajectory of a batch, each with the item it was
drawn for (an erased phrasing, or a prompt to keep).

- Trajectories (the paper's trajectory reuse): drawn with the model being tuned and advanced one
  DDIM step per iteration, so one trajectory serves ~26 consecutive iterations; ESD's rows restart
  from noise at their own step every iteration.
- TrajectoryPool (config.pool, not in the paper): N trajectories drawn with the unedited model
  before training, kept at the window's steps; every iteration trains on randomly chosen ones.

Why a pool: walking one trajectory, KSCU trains ~26 consecutive updates on one phrasing and one
noise seed, and its edit followed those few samples; on the demo model that cost the neighbours
(other styles) 6 to 12 points where ESD, which draws a fresh sample every iteration, lost 2. A
pool gives every update a fresh (phrasing, seed, step) as ESD does, at a fixed cost up front
(2 x window end x N UNet images) instead of 2k per iteration (docs/results.md, "Retention levers").
Rows of the paper's trajectories walk the window together, so a restart samples them in one
batch: rows staggered through the window, restarted one at a time, made a 4-row run 5x slower.
"""
from __future__ import annotations

import random
from collections import defaultdict
from typing import Callable, Generic, Sequence, TypeVar

import torch

from kscu.progress import ProgressFn, Step, quiet
from kscu.sampling import Sampler

Item = TypeVar("Item")


class Trajectories(Generic[Item]):
    """`rows` trajectories of the model being tuned; row r's n-th trajectory starts from the noise of
    seed_base + its number. `fresh`: every row restarts every iteration (ESD)."""

    def __init__(self, sampler: Sampler, rows: int, seed_base: int, fresh: bool = False) -> None:
        self.sampler = sampler
        self.seed_base = seed_base
        self.fresh = fresh
        self.steps: list[int | None] = [None] * rows
        self.latents: list[torch.Tensor | None] = [None] * rows
        self.items: list[Item | None] = [None] * rows
        self.started = 0

    def continues(self, row: int, k: int) -> bool:
        """Whether row `row` holds x_{k-1}, so reaching step k costs one DDIM step."""
        return not self.fresh and self.steps[row] == k - 1

    def sample(self, unet, ks: list[int], choose: Callable[[], Item], embed: Callable[[Sequence[Item]], torch.Tensor]) -> tuple[list[Item], torch.Tensor, torch.Tensor, int]:
        """Items, their conditioning, x at step ks[r] per row and the UNet images used; a row that
        cannot continue gets a new item (`choose()`, in row order) and new noise."""
        restart = [not self.continues(r, k) for r, k in enumerate(ks)]
        self.items = [choose() if new else item for item, new in zip(self.items, restart)]
        cond = embed(self.items)
        x, forwards = self.advance(unet, ks, cond, restart)
        return list(self.items), cond, x, forwards

    @torch.no_grad()
    def advance(self, unet, ks: list[int], cond: torch.Tensor, restart: list[bool]) -> tuple[torch.Tensor, int]:
        """x at step ks[r] for every row (a batch) and the UNet images used: the rows not restarted
        advance one step together (2 images each; they must hold the same step), a restarted one is
        sampled from new noise (2 k images; rows with the same k together)."""
        forwards = 0
        going = [r for r in range(len(ks)) if not restart[r]]
        if going:
            if len({ks[r] for r in going}) > 1:
                raise ValueError(f"rows that continue must be at one step, got {sorted({ks[r] for r in going})}")
            x = torch.cat([self.latents[r] for r in going])
            x = self.sampler.step(unet, x, ks[going[0]] - 1, cond[going])
            for n, r in enumerate(going):
                self.latents[r] = x[n : n + 1]
            forwards += 2 * len(going)
        by_step: dict[int, list[int]] = defaultdict(list)
        for r in range(len(ks)):
            if restart[r]:
                by_step[ks[r]].append(r)
        seeds = {}
        for r in sorted(r for rows in by_step.values() for r in rows):  # numbered in row order
            self.started += 1
            seeds[r] = self.seed_base + self.started
        for k, rows in by_step.items():
            noise = self.sampler.initial_latents([seeds[r] for r in rows]).float()
            x = self.sampler.run(unet, noise, cond[rows], 0, k)
            for n, r in enumerate(rows):
                self.latents[r] = x[n : n + 1]
            forwards += 2 * k * len(rows)
        self.steps = list(ks)
        return torch.cat(self.latents), forwards


class TrajectoryPool(Generic[Item]):
    """`size` trajectories drawn with `unet` (the unedited model) up front, one per item chosen at
    construction, their latents kept at steps first..last-1; `forwards` is what drawing them cost."""

    def __init__(self, sampler: Sampler, unet, size: int, choose: Callable[[], Item], embed: Callable[[Sequence[Item]], torch.Tensor],
                 seed_base: int, first: int, last: int, rng: random.Random, chunk: int = 16,
                 check: Callable[[], None] | None = None, on_progress: ProgressFn | None = None) -> None:
        """check: called before every DDIM step of the draw; it raises to cancel (a pool on a real
        model is thousands of UNet images: minutes that must stay cancellable). on_progress hears
        the draw step by step (on the demo model it is about half of a style erasure's time)."""
        self.items = [choose() for _ in range(size)]
        self.first = first
        self.rng = rng
        self.latents = self._draw(sampler, unet, embed(self.items), seed_base, first, last, chunk, check, on_progress or quiet)
        self.forwards = 2 * (last - 1) * size

    @staticmethod
    @torch.no_grad()
    def _draw(sampler: Sampler, unet, cond: torch.Tensor, seed_base: int, first: int, last: int, chunk: int,
              check: Callable[[], None] | None, on_progress: ProgressFn) -> torch.Tensor:
        out, steps = [], -(-len(cond) // chunk) * (last - 1)
        for i in range(0, len(cond), chunk):
            c = cond[i : i + chunk]
            x = sampler.initial_latents([seed_base + 1 + i + j for j in range(len(c))]).float()
            kept = [x] if first == 0 else []
            for k in range(last - 1):
                if check is not None:
                    check()
                x = sampler.step(unet, x, k, c)
                if k + 1 >= first:
                    kept.append(x)
                on_progress(Step(((i // chunk) * (last - 1) + k + 1) / steps, f"{len(cond)} trajectories of the unedited model"))
            out.append(torch.stack(kept, 1))
        return torch.cat(out)

    def sample(self, unet, ks: list[int], choose: Callable[[], Item], embed: Callable[[Sequence[Item]], torch.Tensor]) -> tuple[list[Item], torch.Tensor, torch.Tensor, int]:
        """Random pool entries, one per row (the same signature as Trajectories.sample; `unet` and
        `choose` are not needed: the pool was drawn up front)."""
        picks = [self.rng.randrange(len(self.items)) for _ in ks]
        items = [self.items[n] for n in picks]
        x = torch.stack([self.latents[n, k - self.first] for n, k in zip(picks, ks)])
        return items, embed(items), x, 0

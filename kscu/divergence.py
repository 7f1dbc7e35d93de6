"""Stop a run that is wrecking the model instead of saving it.

Why: with too large a learning rate, Adam drives the trained weights to thousands and the images
to noise, yet the run "finishes" and its edit looks like any other. The guard's rule, checked while
training (the numbers are a one-off measurement on the demo model, one thread, 40 iterations of
the style preset's loss; benchmarks/safety_checks.py has the guard's rows):
- the loss is not a finite number (lr 1e3 reached NaN): stop at once;
- every CHECK_EVERY iterations and after the last one: a trained weight is not finite, or the
  trained tensors moved by more than MAX_RELATIVE_CHANGE of their own norm (lr 1.5e-4: 6%,
  lr 3e-3: 33%, lr 1e-2: 92%, lr 0.1: 1,061%);
- the mean loss of the last BLOWUP_WINDOW iterations exceeds BLOWUP_FACTOR times the mean of the
  first BLOWUP_WINDOW (the per-step loss of a healthy run varies by about 5x across the window)
  and BLOWUP_FLOOR: the targets are noise predictions of unit variance, so a mean squared error
  of 1 is a prediction as far off as the noise itself. The floor came from a false stop: the demo
  colour preset on "red" starts at loss 0.004 (its first trajectories barely see the colour),
  reached a 10-iteration mean of 0.38 and was stopped at iteration 75 by the ratio alone, while
  the finished run's edit is sound (sanity check 6%; erased, detection 1.00 -> 0.00).
lr 1e-2 for 200 iterations is stopped by the weight rule (at iteration 60 with two threads, 50
with one).
"""
from __future__ import annotations

import math

import torch

CHECK_EVERY = 10
MAX_RELATIVE_CHANGE = 1.0
BLOWUP_WINDOW = 10
BLOWUP_FACTOR = 50.0
BLOWUP_FLOOR = 1.0


class UnlearnDiverged(ValueError):
    """The run was stopped because the model was diverging; nothing was saved, the base is untouched."""

    def __init__(self, iteration: int, why: str, lr: float) -> None:
        super().__init__(f"diverged at iteration {iteration}: {why}; lower the learning rate (it was {lr:g}) and run again. "
                         "Nothing was saved and the base model is unchanged")
        self.iteration = iteration


class DivergenceGuard:
    """Watches one run: call `check` after every iteration with its loss and the tuned weights."""

    def __init__(self, start: dict[str, torch.Tensor], lr: float) -> None:
        """`start`: the frozen model's tensors of the trained names (referenced, not copied: they
        never change, and a float copy of a full SD UNet would cost 3.4 GB)."""
        self._start = {name: tensor.detach() for name, tensor in start.items()}
        with torch.no_grad():
            self._start_norm = math.sqrt(sum(float(t.float().pow(2).sum()) for t in self._start.values())) or 1.0
        self._lr = lr
        self._losses: list[float] = []

    def relative_change(self, params: dict[str, torch.Tensor]) -> float:
        """||W - W0|| / ||W0|| over the trained tensors (NaN if a weight is not finite)."""
        with torch.no_grad():
            squared = sum(float((params[name].detach().float() - start.float()).pow(2).sum())
                          for name, start in self._start.items())
        return math.sqrt(squared) / self._start_norm

    def check(self, iteration: int, loss: float, params: dict[str, torch.Tensor], last: bool = False) -> None:
        """Raise UnlearnDiverged when the rule in the module docstring says so."""
        if not math.isfinite(loss):
            raise UnlearnDiverged(iteration, f"the loss is {loss}", self._lr)
        self._losses.append(loss)
        if iteration % CHECK_EVERY == 0 or last:
            change = self.relative_change(params)
            if not math.isfinite(change):
                raise UnlearnDiverged(iteration, "a trained weight is no longer a finite number", self._lr)
            if change > MAX_RELATIVE_CHANGE:
                raise UnlearnDiverged(iteration, f"the trained weights moved by {change:.0%} of their size "
                                      f"(more than {MAX_RELATIVE_CHANGE:.0%})", self._lr)
        if len(self._losses) >= 2 * BLOWUP_WINDOW:
            first = sum(self._losses[:BLOWUP_WINDOW]) / BLOWUP_WINDOW
            recent = sum(self._losses[-BLOWUP_WINDOW:]) / BLOWUP_WINDOW
            if first > 0 and recent > BLOWUP_FACTOR * first and recent > BLOWUP_FLOOR:
                raise UnlearnDiverged(iteration, f"the loss grew from {first:.3g} to {recent:.3g} "
                                      f"(more than {BLOWUP_FACTOR:g}x its start and above {BLOWUP_FLOOR:g})", self._lr)

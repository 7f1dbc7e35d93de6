"""Hugging Face Spaces: request a ZeroGPU device for the heavy functions, when `spaces` exists.

`spaces.GPU` gives the decorated function a GPU for at most `duration` seconds per call and does
nothing outside ZeroGPU hardware, so the decorator is applied only when the package imports and
is a no-op everywhere else (local runs, CPU Spaces, dedicated-GPU Spaces).

On ZeroGPU keep long training to the presets: a preset run of the demo model (150-250 iterations,
2-4 UNet calls each, the style preset's preservation term included) takes well under a minute on
a GPU, inside the default allocation; SD1.x presets (200-750 iterations at 512 px) need the
longer TRAIN_SECONDS below. Custom runs with thousands of iterations can exceed the allocation
and are cut off: run those on a dedicated GPU Space or locally.
"""
from __future__ import annotations

from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)

TRAIN_SECONDS = 300
"""GPU seconds asked for one unlearning run (a preset run fits)."""
ANALYSIS_SECONDS = 180
"""GPU seconds for an influence analysis, a comparison or metrics."""

try:
    import spaces as _spaces
except ImportError:
    _spaces = None


def gpu(seconds: int) -> Callable[[F], F]:
    """`spaces.GPU(duration=seconds)` when the spaces package is importable, else the identity."""

    def decorate(fn: F) -> F:
        return _spaces.GPU(duration=seconds)(fn) if _spaces is not None else fn

    return decorate

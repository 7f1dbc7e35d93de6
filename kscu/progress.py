"""What every long piece of work shares: one progress protocol and one cancellation exception base.

The trainer, the influence analysis, the evaluation, the recipes and the job runner all take
`on_progress: ProgressFn`, called with an `Update` (how far, in words, seconds left when known),
and stop early when `should_stop()` turns true by raising a `Cancelled`. One shape everywhere means
a progress bar, a job or a recipe can listen to any of them, and catching `Cancelled` handles every
one; a job that raises it ends "cancelled" rather than "failed".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol


class Update(Protocol):
    """One progress report. The trainer's (kscu.trainer.Progress) also carries the loss and the
    UNet being tuned; everyone else sends a `Step`."""

    @property
    def fraction(self) -> float:
        """Share of the work done, in [0, 1]."""

    @property
    def message(self) -> str:
        """What is being done, in words a user reads."""

    @property
    def eta(self) -> float | None:
        """Seconds left, when the work can tell."""


@dataclass(frozen=True)
class Step:
    """A plain Update."""

    fraction: float
    message: str
    eta: float | None = None


ProgressFn = Callable[[Update], None]


def quiet(_update: Update) -> None:
    """A ProgressFn that listens to nothing."""


def phase(on_progress: ProgressFn, start: float, end: float, label: str = "") -> ProgressFn:
    """A ProgressFn for a part of a larger job that covers [start, end] of it: a recipe passes one
    per phase, so the bar moves once from 0 to 1 across training, drawing and measuring. The part's
    seconds left pass on only when it ends the job (end 1): an earlier part's are not the job's."""

    def report(update: Update) -> None:
        message = f"{label}: {update.message}" if label else update.message
        on_progress(Step(start + (end - start) * update.fraction, message, update.eta if end >= 1.0 else None))

    return report


class Cancelled(Exception):
    """Work stopped because the caller asked it to; nothing it would have changed was changed."""

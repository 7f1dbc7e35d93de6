"""The Key Step Table (which DDIM step index each training iteration uses) and the presets.

KSCU trains only on a late window of the schedule whose start depends on the concept kind;
ESD, the baseline, draws steps uniformly from all of them. Both are plain lists of step indices
so the trainer treats them alike and the comparison is one flag.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

PASSES_PER_SHIFT = 8
"""After this many full passes over the window, its start moves one step later."""


def start_limit(num_steps: int) -> int:
    """The largest window start the Key Step Table allows on K = num_steps steps: S < 0.9 K."""
    return int(0.9 * num_steps - 1e-9)


def key_step_table(iterations: int, start: int, num_steps: int = 50, end: int | None = None) -> list[int]:
    """KSCU's table: windows [S..end-1] in order; S += 1 after every 8 passes; S stays < 0.9 K.

    `end` defaults to K (the paper's late window); a smaller end gives the early-window ablation.
    """
    end = num_steps if end is None else end
    limit = min(start_limit(num_steps), end - 1)  # S stays strictly below 0.9 K and below end
    if not 0 < end <= num_steps:
        raise ValueError(f"end step {end} must lie in 1..{num_steps}")
    if not 0 <= start <= limit:
        raise ValueError(f"start step {start} must lie in 0..{limit} (below 0.9 x {num_steps} steps and below the end {end})")
    table: list[int] = []
    s, passes = start, 0
    while len(table) < iterations:
        table.extend(range(s, end))
        passes += 1
        if passes % PASSES_PER_SHIFT == 0 and s + 1 <= limit:
            s += 1
    return table[:iterations]


def uniform_table(iterations: int, num_steps: int = 50, seed: int = 0) -> list[int]:
    """ESD's steps: uniform over all indices, independently per iteration."""
    rng = random.Random(seed)
    return [rng.randrange(num_steps) for _ in range(iterations)]


def scale_start(start_of_50: int, num_steps: int) -> int:
    """A preset start given on the 50-step schedule, moved to a schedule of num_steps."""
    return round(start_of_50 * num_steps / 50)


@dataclass(frozen=True)
class Preset:
    """Defaults for one concept kind on one model family (a Domain's presets)."""

    iterations: int
    start_of_50: int
    params: str
    lr: float
    preserve_weight: float = 1.0
    trajectories: int = 1
    pool: int = 0


PAPER_PRESETS: dict[str, Preset] = {
    "nudity": Preset(750, 14, "noxattn", 1e-5),
    "object": Preset(750, 14, "noxattn", 1e-5),
    "style": Preset(500, 24, "xattn", 1e-5),
    "instance": Preset(200, 40, "xattn", 1e-5),
}
"""The authors' SD1.4 defaults (arXiv 2507.06526)."""
PAPER_ESD_ITERATIONS = 1000


def table_summary(table: list[int], num_steps: int) -> dict:
    """What a table trains: iterations, distinct steps and their share of the schedule."""
    distinct = sorted(set(table))
    return {
        "iterations": len(table),
        "first_step": distinct[0] if distinct else None,
        "last_step": distinct[-1] if distinct else None,
        "distinct_steps": len(distinct),
        "share_of_steps": len(distinct) / num_steps,
    }

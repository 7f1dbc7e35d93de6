"""Rates with their uncertainty: a share measured on n images is a binomial estimate, and a
reviewer needs to know how far it can be off before trusting a verdict built on it."""
from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054
"""Two-sided 95 % normal quantile."""
ERASE_PROMPTS = 100
RETAIN_PROMPTS = 120
"""A full evaluation's test prompts (erase set, retain set): every evaluation, comparison and Quick
erase uses them unless told otherwise. At these sizes an edit that loses 2 of 120 retain images has
a paired 95 % interval within 6 points, so a verdict can pass; at 48 + 48 (Quick erase's earlier
sizes) the same edits of "striped" came out undecided where the full sets passed them."""


@dataclass(frozen=True)
class Rate:
    """k of n, with its Wilson 95 % interval (better than the normal one near 0 and 1, where
    erasure rates live: 0 of 24 is "0 %, up to 14 %", not "0 % exactly")."""

    k: int
    n: int

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.k, self.n)

    def to_dict(self) -> dict:
        low, high = self.interval
        return {"value": round(self.value, 4), "low": round(low, 4), "high": round(high, 4), "k": self.k, "n": self.n}

    def __str__(self) -> str:
        low, high = self.interval
        return f"{self.value:.0%} [{low:.0%}, {high:.0%}]"


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials; (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if k == 0 else max(0.0, centre - half)  # exact at the ends (the formula leaves 1e-17)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Drop:
    """How far a share fell from before to after, measured on the same images (same prompts and
    seeds): `both` images right before and after, `lost` right only before, `gained` right only
    after, `neither`. Its 95 % interval is Newcombe's for paired proportions (method 10, 1998):
    pairing matters because an edit changes few images, and treating the two sides as independent
    samples would make every interval about twice as wide."""

    both: int
    lost: int
    gained: int
    neither: int

    @property
    def n(self) -> int:
        return self.both + self.lost + self.gained + self.neither

    @property
    def before(self) -> Rate:
        return Rate(self.both + self.lost, self.n)

    @property
    def after(self) -> Rate:
        return Rate(self.both + self.gained, self.n)

    @property
    def value(self) -> float:
        return (self.lost - self.gained) / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        if self.n == 0:
            return -1.0, 1.0
        p1, p2 = self.before.value, self.after.value
        (l1, u1), (l2, u2) = self.before.interval, self.after.interval
        phi = _phi(self.both, self.lost, self.gained, self.neither)
        below = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
        above = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
        return max(-1.0, self.value - below), min(1.0, self.value + above)

    def to_dict(self) -> dict:
        low, high = self.interval
        return {"value": round(self.value, 4), "low": round(low, 4), "high": round(high, 4), "n": self.n,
                "lost": self.lost, "gained": self.gained}

    def __str__(self) -> str:
        low, high = self.interval
        return f"{points(-self.value)} pts [{points(-high)}, {points(-low)}]"


def points(change: float) -> str:
    """A change of a share in whole signed points ("+3", "-12"; never "-0")."""
    return f"{round(change * 100) + 0:+d}"


def paired_drop(before: list[bool] | list[int], after: list[bool] | list[int]) -> Drop:
    """The Drop between two per-image outcome lists of the same images, in the same order."""
    if len(before) != len(after):
        raise ValueError(f"paired outcomes need the same images: {len(before)} before, {len(after)} after")
    pairs = [(bool(b), bool(a)) for b, a in zip(before, after)]
    return Drop(pairs.count((True, True)), pairs.count((True, False)), pairs.count((False, True)), pairs.count((False, False)))


def _phi(a: int, b: int, c: int, d: int) -> float:
    """Correlation of the before and after outcomes (0 when a margin is empty: nothing to correlate)."""
    denominator = (a + b) * (c + d) * (a + c) * (b + d)
    return (a * d - b * c) / math.sqrt(denominator) if denominator else 0.0

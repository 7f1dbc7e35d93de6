"""Rates and paired changes with their 95 % intervals (kscu.stats)."""
import random

import pytest

from kscu.stats import Drop, Rate, paired_drop, wilson


def test_wilson_interval_is_wide_on_few_images_and_contains_the_rate():
    assert wilson(0, 24)[0] == 0.0 and 0.13 < wilson(0, 24)[1] < 0.15, "0 of 24 is '0 %, up to 14 %'"
    low, high = wilson(12, 48)
    assert low < 0.25 < high and high - low == pytest.approx(0.24, abs=0.02)
    assert str(Rate(3, 4)).startswith("75% [") and Rate(0, 0).interval == (0.0, 1.0)


def test_paired_drop_counts_the_images_that_changed():
    drop = paired_drop([1, 1, 1, 0, 0, 1], [1, 0, 1, 1, 0, 0])
    assert (drop.both, drop.lost, drop.gained, drop.neither) == (2, 2, 1, 1)
    assert drop.value == pytest.approx(1 / 6) and drop.before == Rate(4, 6) and drop.after == Rate(3, 6)
    low, high = drop.interval
    assert low < drop.value < high
    assert str(paired_drop([1] * 10, [1] * 5 + [0] * 5)).startswith("-50 pts [")
    with pytest.raises(ValueError, match="same images"):
        paired_drop([1, 0], [1])


def test_paired_interval_is_narrower_than_treating_the_sides_as_independent():
    # 120 images, the edit changes 6 of them: pairing knows the other 114 (14 wrong on both sides) did not move.
    drop = paired_drop([1] * 100 + [0] * 14 + [1] * 6, [1] * 100 + [0] * 14 + [0] * 6)
    (l1, u1), (l2, u2) = drop.before.interval, drop.after.interval
    independent = (drop.value - ((drop.before.value - l1) ** 2 + (u2 - drop.after.value) ** 2) ** 0.5,
                   drop.value + ((u1 - drop.before.value) ** 2 + (drop.after.value - l2) ** 2) ** 0.5)
    low, high = drop.interval
    assert independent[0] < low < drop.value < high < independent[1]
    assert Drop(0, 0, 0, 0).interval == (-1.0, 1.0)


@pytest.mark.parametrize("right, lose, gain, n", [(0.9, 0.1, 0.02, 48), (0.95, 0.05, 0.0, 120), (0.6, 0.2, 0.1, 30)])
def test_paired_interval_covers_the_true_drop_about_95_percent_of_the_time(right, lose, gain, n):
    rng = random.Random(0)
    true = right * lose - (1 - right) * gain
    covered = 0
    for _ in range(1000):
        before = [rng.random() < right for _ in range(n)]
        after = [(b and rng.random() >= lose) or (not b and rng.random() < gain) for b in before]
        low, high = paired_drop(before, after).interval
        covered += low <= true <= high
    assert 0.92 <= covered / 1000 <= 0.995, f"coverage {covered / 1000:.3f}"

"""Concept influence curves and their figures: plumbing on the micro model, and the window-start
rule on hand-made curves whose answer is known."""
import dataclasses
import io
import json

import numpy as np
import pytest

from kscu.influence import (
    AnalysisCancelled,
    NEIGHBOUR_MEASURE,
    InfluenceCurve,
    analyze,
    neighbour_lead,
    suggest_start,
    switch_grid,
)
from kscu.plots import X_LABEL, influence_figure, loss_figure
from kscu.domain import build_domain
from kscu.progress import Cancelled

SMALL = dict(num_steps=5, seeds=2, causal_seeds=2, neighbour_seeds=2, switch_points=3)
"""Small enough for seconds on the micro model; K = 5 gives switch points 0, 2, 5."""


@pytest.fixture(scope="module")
def striped(micro_demo):
    return analyze(micro_demo, "striped", kind="style", **SMALL)


@pytest.fixture(scope="module")
def sd1_like(micro_demo):
    """The micro model presented as an SD1.x model: no judge, no demo-world phrasing."""
    return dataclasses.replace(micro_demo, domain=build_domain("sd1"))


# --- analyze on the micro model -----------------------------------------------------------------

def test_report_shapes_and_json(micro_demo, striped):
    neighbours = micro_demo.domain.default_neighbours("striped", "style")
    assert [c.measure for c in striped.curves] == ["gap", "causal_from", "causal_until"] + [NEIGHBOUR_MEASURE] * len(neighbours)
    assert [c.concept for c in striped.curves[3:]] == neighbours and len(neighbours) >= 2
    gap = striped.curve("gap")
    assert gap.step_index == [0, 1, 2, 3, 4]
    assert len(gap.timestep) == len(gap.value) == len(gap.spread) == 5
    assert gap.timestep == sorted(gap.timestep, reverse=True), "index 0 is the noisiest step"
    assert all(v > 0 for v in gap.value), "the concept word changes the prediction"
    assert len(gap.weight) == 5 and gap.weight[0] > gap.weight[-2] > 0, "noisy steps move the sample most"
    for curve in striped.curves[1:]:
        assert curve.step_index == [0, 2, 5]
        assert np.array(curve.samples).shape == (3, 2) and np.allclose(np.mean(curve.samples, axis=1), curve.value)
        assert curve.timestep[-1] == 0 and curve.timestep[0] == gap.timestep[0]
        assert all(0 <= v <= 1 for v in curve.value)
    assert all(s >= 0 for c in striped.curves for s in c.spread)
    # "concept from step 0" and "concept up to step K" are both the full-concept run
    assert striped.curve("causal_from").value[0] == striped.curve("causal_until").value[-1]
    assert striped.curve("causal_from").value[-1] == striped.curve("causal_until").value[0]
    assert set(striped.seconds) == {"gap", "causal", "neighbours"} and all(s > 0 for s in striped.seconds.values())
    assert 0 <= striped.suggested_start < 0.9 * 5
    assert striped.paper_start == 2 and striped.paper_start_of_50 == 24  # style, 24 of 50 -> 2 of 5
    data = json.loads(json.dumps(striped.to_dict()))
    assert data["curves"][0]["measure"] == "gap" and data["rule"] == striped.rule


def test_same_seeds_same_values_other_seeds_other_values(micro_demo, striped):
    again = analyze(micro_demo, "striped", kind="style", **SMALL)
    assert again.to_dict() | {"seconds": None} == striped.to_dict() | {"seconds": None}
    other = analyze(micro_demo, "striped", kind="style", measures=("gap",), num_steps=5, seeds=[10, 11])
    assert other.curve("gap").value != striped.curve("gap").value


def test_progress_reaches_one_and_cancel_raises(micro_demo):
    seen = []
    analyze(micro_demo, "red", kind="colour", on_progress=lambda u: seen.append(u.fraction), **SMALL)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    with pytest.raises(AnalysisCancelled) as info:
        analyze(micro_demo, "red", kind="colour", should_stop=lambda: True, **SMALL)
    assert isinstance(info.value, Cancelled), "job runners catch every kscu cancel"


def test_the_causal_measure_samples_each_run_once(micro_demo):
    """Shared prefixes and shared ends: one trajectory per curve up to K, one branch per switch point
    after 0 (K = 5, grid 0, 2, 5: 2 x (5 + 3 + 0) sampler steps, after the gap measure; sampling
    every end again cost 2 x (5 + 5 + 3)). The gap measure calls the UNet twice a step. A
    neighbour's single curve has no partner to share its anchor-only end with: 5 + 5 + 3."""
    calls = []
    handle = micro_demo.unet.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        report = analyze(micro_demo, "red", kind="colour", **SMALL)
        own_only = len(calls)
        analyze(micro_demo, "red", kind="colour", neighbours=["green", "blue"], **SMALL)
    finally:
        handle.remove()
    neighbours = len(micro_demo.domain.default_neighbours("red", "colour"))
    assert own_only == 2 * 5 + 2 * (5 + 3) + neighbours * (5 + 5 + 3)
    assert len(calls) - own_only == 2 * 5 + 2 * (5 + 3) + 2 * (5 + 5 + 3), "the caller's neighbours replace the domain's"
    assert report.curve("causal_from").value[0] == report.curve("causal_until").value[-1]


def test_the_until_curve_alone_gives_its_values_and_start_for_less_work(micro_demo):
    """until_only (the robust trainer's analysis): the "from" curve is left out, the "until" curve and
    S are the full analysis' (its k = 0 end sampled by itself: 5 + 5 + 3 sampler steps, not 2 x 8)."""
    calls = []
    handle = micro_demo.unet.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        full = analyze(micro_demo, "striped", kind="style", neighbours=(), **SMALL)
        both = len(calls)
        lean = analyze(micro_demo, "striped", kind="style", neighbours=(), until_only=True, **SMALL)
    finally:
        handle.remove()
    assert [c.measure for c in lean.curves] == ["gap", "causal_until"]
    assert lean.curve("causal_until").samples == full.curve("causal_until").samples
    assert lean.suggested_start == full.suggested_start and lean.rule == full.rule
    assert both == 2 * 5 + 2 * (5 + 3) and len(calls) - both == 2 * 5 + (5 + 5 + 3)


def test_sd1_without_detector_measures_gap_only_and_says_why(sd1_like):
    report = analyze(sd1_like, "Van Gogh style", kind="style", num_steps=5, seeds=2)
    assert [c.measure for c in report.curves] == ["gap"]
    assert "causal" not in report.seconds
    assert any("no judge" in note for note in report.notes)
    assert "gap" in report.rule and 0 <= report.suggested_start < 4.5
    with pytest.raises(ValueError, match="detector"):
        analyze(sd1_like, "Van Gogh", measures=("causal",), num_steps=5)


def test_sd1_with_a_caller_detector_measures_causal(sd1_like):
    detector = lambda images: np.ones(len(images))  # noqa: E731
    report = analyze(sd1_like, "Van Gogh style", kind="style", detector=detector, **SMALL)
    assert report.curve("causal_until").value == [1.0, 1.0, 1.0]
    assert "flat" in report.rule, "a constant detector carries no signal: the gap rule decides"


def test_bad_input_says_what_to_do(micro_demo):
    with pytest.raises(ValueError, match="measures"):
        analyze(micro_demo, "striped", measures=("fid",))
    with pytest.raises(ValueError, match="kind"):
        analyze(micro_demo, "striped", kind="painting")
    with pytest.raises(ValueError, match="seeds"):
        analyze(micro_demo, "striped", seeds=[])
    with pytest.raises(ValueError, match="one score"):
        analyze(micro_demo, "striped", measures=("causal",), detector=lambda images: np.ones(3), **{**SMALL, "causal_seeds": 2})


# --- the window-start rule on hand-made curves ----------------------------------------------------

def _curve(measure, steps, values):
    return InfluenceCurve("c", measure, list(steps), [0] * len(steps), list(values), [0.0] * len(steps))


def test_rule_causal_until_crossing_is_interpolated():
    # anchor only 0.1, full concept 0.9; decided share 0, 0, .125, .375, 1, 1 -> crosses 0.5 at 16
    until = _curve("causal_until", [0, 5, 10, 15, 20, 25], [0.1, 0.1, 0.2, 0.4, 0.9, 0.9])
    s = suggest_start([until], 25, paper_start_of_50=24)
    assert (s.start, s.start_of_50, s.paper_start, s.paper_start_of_50) == (16, 32, 12, 24)
    assert "causal" in s.rule
    assert suggest_start([until], 25, threshold=0.25).start == 12  # 10 + (.125 / .25) * 5 = 12.5


def test_rule_clamps_below_nine_tenths():
    late = _curve("causal_until", [0, 2, 4, 6, 8, 10], [0, 0, 0, 0, 0, 1])  # crossing at 9
    s = suggest_start([late], 10)
    assert s.start == 8 and "clamped" in s.rule


def test_rule_falls_back_to_the_cumulative_gap():
    flat = _curve("causal_until", [0, 4, 8], [0.3, 0.35, 0.4])  # effect 0.1 < MIN_CAUSAL_EFFECT
    gap = _curve("gap", range(8), [3, 1, 1, 1, 1, 1, 1, 1])  # cumulative share .3 .4 .5 .6: > .5 from 3 on
    s = suggest_start([flat, gap], 8, paper_start_of_50=14)
    assert s.start == 3 and "flat" in s.rule and "gap" in s.rule
    assert (s.paper_start, s.paper_start_of_50) == (2, 14)
    with pytest.raises(ValueError, match="gap"):
        suggest_start([flat], 8)
    with pytest.raises(ValueError, match="threshold"):
        suggest_start([gap], 8, threshold=1.0)


def test_rule_weights_the_gap_by_how_far_each_step_moves_the_sample():
    gap = _curve("gap", range(4), [1, 1, 1, 1])  # shares .25 .5 .75 1: > .5 from 2 on
    assert suggest_start([gap], 4).start == 2
    weighted = dataclasses.replace(gap, weight=[3, 1, 1, 1])  # shares .5 .67 .83 1: > .5 from 1 on
    assert suggest_start([weighted], 4).start == 1


def _sampled(measure, steps, per_seed, concept="c"):
    """A causal curve from per-seed detections (rows: switch points, columns: seeds)."""
    samples = np.asarray(per_seed, dtype=float)
    return InfluenceCurve(concept, measure, list(steps), [0] * len(steps), samples.mean(1).tolist(), samples.std(1).tolist(),
                          samples=samples.tolist())


def _detections(shares, seeds=24):
    """Per-seed 0/1 detections at each switch point with exactly `share` of the seeds detecting."""
    return [[1.0] * round(share * seeds) + [0.0] * (seeds - round(share * seeds)) for share in shares]


STEPS = [0, 5, 10, 15, 20, 25]
LATE = [0, 0.1, 0.3, 0.7, 0.9, 1]  # the concept: decided between 10 and 15 (half at 12.5)


def test_rule_keeps_the_preset_when_no_step_separates_the_concept_from_its_neighbours():
    until = _sampled("causal_until", STEPS, _detections(LATE))
    same = [_sampled(NEIGHBOUR_MEASURE, STEPS, _detections(LATE, 8), concept=n) for n in ("a", "b", "c")]
    s = suggest_start([until, *same], 25, paper_start_of_50=24)
    assert (s.start, s.start_of_50) == (12, 24), "the preset, scaled to K = 25"
    assert s.lead is not None and not s.lead.separated and s.lead.low < 0 < s.lead.high
    assert "no step separates" in s.rule and "(the half-decided rule alone: 12)" in s.rule
    # the same curves at a preset elsewhere: still the preset, not the crossing
    assert suggest_start([until, *same], 25, paper_start_of_50=14).start == 7


def test_rule_follows_the_curve_when_the_neighbours_are_decided_earlier():
    until = _sampled("causal_until", STEPS, _detections(LATE))
    early = [_sampled(NEIGHBOUR_MEASURE, STEPS, _detections([0, 0.6, 0.9, 1, 1, 1], 8), concept=n) for n in ("a", "b", "c")]
    s = suggest_start([until, *early], 25, paper_start_of_50=24)
    assert s.start == 12 and s.lead.separated and s.lead.neighbours == ["a", "b", "c"]
    assert s.lead.lead == pytest.approx(np.mean([0.5, 0.6, 0.3, 0.1]))
    assert "the window can start where they are fixed" in s.rule


def test_the_lead_leaves_out_neighbours_without_an_effect():
    until = _sampled("causal_until", STEPS, _detections(LATE))
    flat = _sampled(NEIGHBOUR_MEASURE, STEPS, _detections([0.5] * 6, 8), concept="flat")
    early = _sampled(NEIGHBOUR_MEASURE, STEPS, _detections([0, 0.6, 0.9, 1, 1, 1], 8), concept="early")
    assert neighbour_lead(until, [flat, early]).neighbours == ["early"]
    assert neighbour_lead(until, [flat]) is None
    coarse = _sampled(NEIGHBOUR_MEASURE, [0, 10, 25], _detections([0, 0.9, 1], 8), concept="coarse")
    assert neighbour_lead(until, [coarse]) is None, "curves on other switch points are not compared"
    # without neighbours (or with only unusable ones) the half-decided rule stands alone
    assert suggest_start([until, flat], 25).start == 12 and suggest_start([until, flat], 25).lead is None


def test_switch_grid_spans_the_schedule():
    assert switch_grid(25) == [0, 2, 5, 8, 10, 12, 15, 18, 20, 22, 25]
    assert switch_grid(5, 3) == [0, 2, 5]


# --- figures ----------------------------------------------------------------------------------------

def test_influence_figure_overlays_concepts(micro_demo, striped):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    star = analyze(micro_demo, "star", kind="object", measures=("gap",), num_steps=5, seeds=2)
    fig = influence_figure([striped, star], window=(2, 5))
    assert plt.get_fignums() == before, "no pyplot state"
    top, bottom = fig.axes
    # top: 2 gap curves + 2 suggested S + 2 paper presets (style 2, object 1); bands; window
    assert len(top.lines) == 6 and len(top.collections) == 2 and len(top.patches) == 1
    # bottom: striped's two causal curves, its neighbours' mean + the same vertical lines and window
    assert len(bottom.lines) == 7 and len(bottom.patches) == 1
    assert bottom.get_xlabel() == X_LABEL
    # one legend outside the axes: 2 concepts, gap, 2 causal styles, neighbours, suggested S, presets, window
    assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == 9
    fig.savefig(io.BytesIO(), format="png")

    gap_only = influence_figure([star])
    assert len(gap_only.axes) == 1 and len(gap_only.axes[0].patches) == 0
    with pytest.raises(ValueError, match="num_steps"):
        influence_figure([striped, dataclasses.replace(star, num_steps=50)])
    with pytest.raises(ValueError, match="analyze"):
        influence_figure([])


def test_loss_figure():
    fig = loss_figure([1.0 / (i + 1) for i in range(100)], [12 + i % 13 for i in range(100)])
    loss_ax, step_ax = fig.axes
    assert len(loss_ax.lines) == 2 and len(step_ax.lines) == 1
    running = loss_ax.lines[1].get_ydata()
    assert running[0] == 1.0 and running[-1] == pytest.approx(np.mean([1.0 / (i + 1) for i in range(90, 100)]))
    assert len(loss_figure([], []).axes) == 1
    with pytest.raises(ValueError, match="step index"):
        loss_figure([1.0, 2.0], [3])

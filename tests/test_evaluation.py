"""Evaluation (UA / IRA / CRA, before next to after) and the before/after image grids."""
import copy
import dataclasses
import json
import re
from collections import Counter

import numpy as np
import pytest
import torch

from kscu.demo.domain import DemoDomain
from kscu.demo.prompts import HELD_OUT_TEMPLATES, TRAIN_TEMPLATES, prompt_for
from kscu.demo.world import ATTRIBUTES, Scene
from kscu.domain import EvalPlan, PromptSet, build_domain
from kscu.evaluation import (
    EvalReport,
    EvaluationCancelled,
    concept_metrics,
    evaluate_edit,
    format_table,
    verdict,
)
from kscu.grids import blur, comparison_grids, grid_prompts, image_grid

DEMO = DemoDomain()


def prompt_sets(concept, n_erase=100, n_retain=120, seed=1234):
    plan = DEMO.evaluation_plan(concept, None, None, n_erase, n_retain, seed)
    return plan.erase, plan.retain


def _scenes(prompt_set):
    return [Scene(*(prompt_set.asked[a][i] for a in ATTRIBUTES)) for i in range(len(prompt_set.prompts))]


# --- prompt sets ---------------------------------------------------------------------------------

def test_prompt_sets_use_held_out_templates_only():
    erase, retain = prompt_sets("striped", n_erase=30, n_retain=40, seed=7)
    for prompt_set in (erase, retain):
        for prompt, scene in zip(prompt_set.prompts, _scenes(prompt_set)):
            assert prompt in {prompt_for(scene, t) for t in HELD_OUT_TEMPLATES}
            assert prompt not in {prompt_for(scene, t) for t in TRAIN_TEMPLATES}


def test_prompt_sets_counts_seeds_and_determinism():
    erase, retain = prompt_sets("striped", n_erase=100, n_retain=120, seed=1234)
    assert len(erase.prompts) == len(erase.seeds) == len(erase.asked["style"]) == 100
    assert len(retain.prompts) == len(retain.seeds) == len(retain.asked["style"]) == 120
    assert len(set(erase.seeds + retain.seeds)) == 220, "every prompt gets its own seed"
    again = prompt_sets("striped", n_erase=100, n_retain=120, seed=1234)
    assert (erase, retain) == again
    other = prompt_sets("striped", n_erase=100, n_retain=120, seed=99)
    assert other[0].prompts != erase.prompts and other[0].seeds != erase.seeds


def test_retain_set_spreads_evenly_over_the_other_values():
    erase, retain = prompt_sets("striped", n_erase=10, n_retain=120, seed=1)
    assert Counter(retain.asked["style"]) == {"plain": 30, "dotted": 30, "checkered": 30, "outlined": 30}
    assert set(erase.asked["style"]) == {"striped"}
    # the other attributes vary (random, not fixed)
    assert set(retain.asked["colour"]) == set(ATTRIBUTES["colour"])


@pytest.mark.parametrize("concept", ["striped", "star", "red", "grey"])
def test_concept_word_in_erase_prompts_only(concept):
    erase, retain = prompt_sets(concept, n_erase=40, n_retain=60, seed=3)
    word = re.compile(rf"\b{concept}\b")
    assert all(word.search(p) for p in erase.prompts)
    assert not any(word.search(p) for p in retain.prompts)


def test_prompt_sets_reject_unknown_concepts_and_empty_sets():
    with pytest.raises(ValueError, match="not a concept of the demo world"):
        prompt_sets("van gogh")
    with pytest.raises(ValueError, match="at least 1"):
        prompt_sets("striped", n_erase=0)
    with pytest.raises(ValueError, match="must be other style values"):
        DEMO.evaluation_plan("striped", None, ["red"], 4, 4, 0)


# --- metric arithmetic ---------------------------------------------------------------------------

def test_concept_metrics_on_hand_made_readings():
    styles = ("striped", "plain", "dotted", "checkered", "outlined")
    groups = {"style": styles, "shape": ATTRIBUTES["shape"], "colour": ATTRIBUTES["colour"], "background": ATTRIBUTES["background"]}
    erase_asked = {"style": ["striped"] * 4, "shape": ["circle", "square", "triangle", "star"],
                   "colour": ["red", "green", "blue", "yellow"], "background": ["dark", "light", "grey", "dark"]}
    retain_asked = {"style": ["plain", "dotted", "checkered", "outlined"] * 2, "shape": ["circle"] * 8,
                    "colour": ["green"] * 8, "background": ["grey"] * 8}
    plan = EvalPlan("striped", "style", groups, PromptSet([""] * 4, [0] * 4, erase_asked), PromptSet([""] * 8, [0] * 8, retain_asked))
    # 3 of 4 erase images still read as striped; shapes all right, one colour wrong
    erase_read = {k: np.array(v, dtype=object) for k, v in erase_asked.items()}
    erase_read["style"] = np.array(["striped", "striped", "striped", "plain"], dtype=object)
    erase_read["colour"] = np.array(["red", "green", "blue", "purple"], dtype=object)
    # style right on 6 of 8 (two read as striped), shape right on 8, colour on 4, background on 7
    retain_read = {k: np.array(v, dtype=object) for k, v in retain_asked.items()}
    retain_read["style"] = np.array(["plain", "dotted", "checkered", "outlined", "striped", "striped", "checkered", "outlined"], dtype=object)
    retain_read["colour"] = np.array(["green"] * 4 + ["red"] * 4, dtype=object)
    retain_read["background"] = np.array(["grey"] * 7 + ["dark"], dtype=object)
    m = concept_metrics(plan, erase_read, retain_read)
    assert m["ua"] == 0.25 and m["detection_rate"] == 0.75
    assert m["ira"] == 0.75
    assert m["ira_by_value"] == {"plain": 0.5, "dotted": 0.5, "checkered": 1.0, "outlined": 1.0}
    assert m["cra"] == {"shape": 1.0, "colour": 0.5, "background": 0.875}
    assert m["cra_mean"] == pytest.approx((1.0 + 0.5 + 0.875) / 3)
    assert m["erase_set_retention"] == {"shape": 1.0, "colour": 0.75, "background": 1.0}
    json.dumps(m)  # plain floats, JSON-ready


def _report(before_detection, after_detection, ira_delta, colour_delta, n_erase=100, n_retain=120):
    """Made-up readings: the images that change after the edit are the first ones (paired outcomes)."""
    def ones(share, n):
        return [1] * round(share * n) + [0] * (n - round(share * n))

    def changed(share, delta, n):
        before = ones(share, n)
        lost = round(-delta * n)
        return [0] * lost + before[lost:] if lost > 0 else ones(share + delta, n)

    def metrics(detection, ira, colour):
        hits = {"detection_rate": detection, "ira": ira, "cra/shape": ones(0.9, n_retain), "cra/colour": colour,
                "cra/background": ones(0.95, n_retain)}
        shares = {k: sum(v) / len(v) for k, v in hits.items()}
        return {"ua": 1 - shares["detection_rate"], "detection_rate": shares["detection_rate"], "ira": shares["ira"],
                "cra": {"shape": shares["cra/shape"], "colour": shares["cra/colour"], "background": shares["cra/background"]},
                "cra_mean": (shares["cra/shape"] + shares["cra/colour"] + shares["cra/background"]) / 3,
                "erase_set_retention": {}, "hits": hits}
    before = metrics(ones(before_detection, n_erase), ones(0.9, n_retain), ones(0.9, n_retain))
    after = metrics(ones(after_detection, n_erase), changed(0.9, ira_delta, n_retain), changed(0.9, colour_delta, n_retain))
    return EvalReport("striped", "style", before, after, n_erase, n_retain, 25, 3.0, 1234, 12.0)


def test_verdict_passes_fails_or_stays_undecided_from_the_intervals():
    good = verdict(_report(0.95, 0.0, 0.0, -0.02))
    assert good.outcome == "passed" and good.passed and {c.outcome for c in good.checks} == {"met"}
    assert good.check("erased_after").interval[1] < 0.04, "0 of 100: at most 3.7 %"
    bad = verdict(_report(0.5, 0.3, -0.2, -0.15))
    assert bad.outcome == "failed" and not bad.passed
    assert {c.name for c in bad.checks if c.outcome == "missed"} == {"detected_before", "erased_after", "ira_kept", "cra_colour_kept"}
    assert bad.check("cra_shape_kept").outcome == "met", "an unchanged group is kept"
    assert "may lose at most 8 points (-15 points" in bad.summary("style")
    # The same point estimates on 12 images per set decide nothing: 1 of 12 still drawn is 8 %, up to 35 %.
    small = verdict(_report(1.0, 1 / 12, 0.0, 0.0, n_erase=12, n_retain=12))
    assert small.outcome == "undecided" and small.check("erased_after").outcome == "undecided"
    assert small.summary("style").startswith("undecided, measure on more images")
    # A 5-point drop measured on 120 images is neither clearly within 8 points nor clearly beyond.
    assert verdict(_report(0.95, 0.0, -0.05, 0.0)).check("ira_kept").outcome == "undecided"
    assert json.loads(json.dumps(good.to_dict()))["checks"]["ira_kept"]["outcome"] == "met"
    with pytest.raises(ValueError, match="edited UNet"):
        verdict(dataclasses.replace(_report(0.95, 0.05, 0, 0), after=None))


def test_format_table_shows_before_after_and_delta_with_intervals():
    table = format_table(_report(0.95, 0.05, -0.05, -0.07))
    assert "before  [95% interval]   after  [95% interval]   delta  [95% interval]" in table
    assert re.search(r"detection rate \(erase set\)\s+0\.950\s+\[0\.888, 0\.978\]\s+0\.050\s+\[0\.022, 0\.112\]\s+-0\.900\s+\[-0\.9", table)
    assert re.search(r"CRA colour\s+0\.900\s+\[[0-9., ]+\]\s+0\.83[0-9]\s+\[[0-9., ]+\]\s+-0\.067\s+\[-0\.1[0-9]+, -0\.0[0-9]+\]", table)
    base_only = format_table(dataclasses.replace(_report(0.95, 0.05, 0, 0), after=None))
    assert "after" not in base_only.splitlines()[1] and "UA" in base_only


# --- end to end on the micro demo model ---------------------------------------------------------

def test_evaluate_edit_end_to_end_with_the_base_as_edit(micro_demo):
    calls = []
    report = evaluate_edit(micro_demo, copy.deepcopy(micro_demo.unet), "striped", n_erase=4, n_retain=8, num_steps=3,
                           batch_size=5, on_progress=lambda update: calls.append((update.fraction, update.message)))
    assert report.attribute == "style" and report.n_erase == 4 and report.n_retain == 8
    assert report.after == report.before, "same weights, same prompts and seeds: identical readings"
    assert calls[-1] == (1.0, "24 of 24 test images") and len(calls) == 6
    assert [f for f, _ in calls] == sorted(f for f, _ in calls), "the bar only moves forward"
    for key in ("ua", "detection_rate", "ira", "cra", "cra_mean", "erase_set_retention"):
        assert key in report.before
    assert set(report.before["cra"]) == {"shape", "colour", "background"}
    assert report.before["ua"] + report.before["detection_rate"] == pytest.approx(1.0)
    assert json.loads(json.dumps(report.to_dict()))["concept"] == "striped"
    assert "UA" in format_table(report)


def test_evaluate_edit_base_only_and_cancel(micro_demo):
    report = evaluate_edit(micro_demo, None, "red", n_erase=2, n_retain=4, num_steps=2)
    assert report.after is None and report.attribute == "colour"
    with pytest.raises(EvaluationCancelled):
        evaluate_edit(micro_demo, None, "red", n_erase=2, n_retain=4, num_steps=2, should_stop=lambda: True)


def test_evaluate_edit_reuses_a_base_report_with_the_same_settings(micro_demo):
    edited = copy.deepcopy(micro_demo.unet)
    torch.nn.init.normal_(edited.conv_out.weight, std=0.5)  # a different "after", so reuse is visible
    full = evaluate_edit(micro_demo, edited, "striped", n_erase=4, n_retain=4, num_steps=2)
    base = evaluate_edit(micro_demo, None, "striped", n_erase=4, n_retain=4, num_steps=2)
    calls = []
    reused = evaluate_edit(micro_demo, edited, "striped", n_erase=4, n_retain=4, num_steps=2, base=base,
                           on_progress=lambda update: calls.append(update.message))
    assert reused.before == full.before == base.before and reused.after == full.after
    assert calls[-1] == "8 of 8 test images", "only the edited side is sampled"
    with pytest.raises(ValueError, match="other settings"):
        evaluate_edit(micro_demo, edited, "striped", n_erase=4, n_retain=4, num_steps=3, base=base)


def test_evaluate_edit_rejects_unknown_concepts_and_sd1(micro_demo):
    with pytest.raises(ValueError, match="not a concept of the demo world"):
        evaluate_edit(micro_demo, None, "van gogh", n_erase=2, n_retain=2, num_steps=2)
    sd1 = dataclasses.replace(micro_demo, domain=build_domain("sd1"))
    with pytest.raises(ValueError, match="need a judge"):
        evaluate_edit(sd1, None, "striped", n_erase=2, n_retain=2, num_steps=2)


# --- grids -------------------------------------------------------------------------------------

def test_image_grid_layout_and_nearest_upscaling():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 8, 10, 3), dtype=np.uint8)
    plain = image_grid(images, rows=2, cols=3, scale=3)
    assert plain.size == (3 * 30 + 2 * 2, 2 * 24 + 2)
    cell = np.asarray(plain)[26:50, 32:62]  # row 1, column 1 (after one gap each way)
    assert np.array_equal(cell, images[4].repeat(3, axis=0).repeat(3, axis=1))
    labelled = image_grid(images, rows=2, cols=3, labels=["a striped square", "a dotted square"], scale=3)
    assert labelled.size[0] == plain.size[0] and labelled.size[1] > plain.size[1]
    with pytest.raises(ValueError):
        image_grid(images, rows=2, cols=2)
    with pytest.raises(ValueError):
        image_grid(images, rows=2, cols=3, labels=["only one"])


def test_grid_prompts_demo_and_sd1(micro_demo):
    rows = grid_prompts(micro_demo, "striped")
    assert len(rows) == len(ATTRIBUTES["style"])
    assert "striped" in rows[0] and not any("striped" in r for r in rows[1:])
    assert all(r.startswith("an image of a") and r.endswith("square against a light backdrop") for r in rows)
    crossed = grid_prompts(micro_demo, "blue", neighbours=["circle", "a red kite"])
    assert "blue" in crossed[0] and "blue" not in crossed[1] and crossed[2] == "a red kite"
    sd1 = dataclasses.replace(micro_demo, domain=build_domain("sd1"))
    assert grid_prompts(sd1, "Van Gogh", neighbours=["Monet", " "]) == ["Van Gogh", "Monet"]
    assert grid_prompts(sd1, "Van Gogh")[1:] == ["Claude Monet", "Pablo Picasso", "Salvador Dali"], "built-in neighbours"


def test_comparison_grids_sizes(micro_demo):
    out = comparison_grids(micro_demo, copy.deepcopy(micro_demo.unet), "striped", seeds=(0, 1), num_steps=2)
    rows, cols = len(ATTRIBUTES["style"]), 2
    height, width = out["before_images"].shape[1:3]
    assert out["before_images"].shape == (rows * cols, height, width, 3)
    assert np.array_equal(out["before_images"], out["after_images"])
    cell = max(1, -(-128 // width)) * width
    assert cell >= 128
    assert out["before"].size[0] == cols * cell + (cols - 1) * 2
    assert out["before"].size == out["after"].size
    base_only = comparison_grids(micro_demo, None, "striped", seeds=(3,), num_steps=2)
    assert base_only["after"] is None and base_only["after_images"] is None and len(base_only["prompts"]) == rows
    reused = comparison_grids(micro_demo, copy.deepcopy(micro_demo.unet), "striped", seeds=(3,), num_steps=2, base=base_only)
    assert reused["before"] is base_only["before"] and np.array_equal(reused["after_images"], base_only["before_images"])
    with pytest.raises(ValueError, match="other prompts or settings"):
        comparison_grids(micro_demo, None, "striped", seeds=(4,), num_steps=2, base=base_only)


def test_blur_smooths_and_keeps_shape():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    soft = blur(images, 3)
    assert soft.shape == images.shape and soft.dtype == np.uint8
    assert soft.astype(float).std() < images.astype(float).std() / 2
    assert np.array_equal(blur(images, 0), images)

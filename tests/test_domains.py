"""Domains and judges: the demo world is one Domain among others, the generic SD1.x domain phrases
any concept, every judge reads through one protocol, and the recipes run on any model."""
from __future__ import annotations

import ast
import copy
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from kscu.demo.judge import ClassifierJudge
from kscu.domain import Domain, build_domain
from kscu.judges import ClipJudge, Judge, JudgeLoadError, NudeNetJudge, load_judge
from kscu.models import load_model
from kscu.recipes import EditKept, compare, quick_erase
from kscu.retention import IDENTICAL_PSNR, image_change
from kscu.sd1_domain import BUILT_IN_LISTS, TEST_TEMPLATES, TRAIN_TEMPLATES, SD1Domain
from kscu.trainer import unlearn
from kscu.config import UnlearnConfig

REPO = Path(__file__).resolve().parents[1]
SHAPE_CLIP = REPO / "assets" / "shape-clip"


# --- the import rule: the demo world stays behind its Domain -------------------------------------

def _library_files() -> list[Path]:
    files = [p for p in (REPO / "kscu").rglob("*.py") if "demo" not in p.relative_to(REPO / "kscu").parts[:1]]
    return files + sorted((REPO / "ui").rglob("*.py")) + [REPO / "app.py"]


def test_no_module_outside_the_demo_domain_imports_kscu_demo():
    offenders = []
    for path in _library_files():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "kscu.demo" or n.startswith("kscu.demo.") for n in names):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == ["kscu/domain.py:" + str(_build_domain_import_line())], "only build_domain may import the demo Domain"


def _build_domain_import_line() -> int:
    source = (REPO / "kscu" / "domain.py").read_text().splitlines()
    return next(i for i, line in enumerate(source, 1) if "from kscu.demo.domain import DemoDomain" in line)


def test_no_branch_outside_domain_construction_tests_the_family_string():
    literal = r"""["'](demo|sd1)["']"""
    pattern = re.compile(rf"family\)?\s*(==|!=)\s*{literal}|{literal}\s*(==|!=)\s*[\w.]*family|family\)?\s+(not\s+)?in\s*[(\[{{][^)\]}}]*{literal}")
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in _library_files() if p.name != "domain.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


# --- the generic SD1.x domain ------------------------------------------------------------------

def test_sd1_training_and_test_phrasings_never_meet():
    for kind in TRAIN_TEMPLATES:
        trained = {prompt for prompt, _ in TRAIN_TEMPLATES[kind]}
        assert not trained & set(TEST_TEMPLATES[kind]), kind
    domain = SD1Domain()
    pairs = domain.training_pairs("Van Gogh", "style", None, count=40, seed=3)
    plan = domain.evaluation_plan("Van Gogh", "style", None, 40, 40, seed=3)
    assert not {p.prompt for p in pairs} & set(plan.erase.prompts)
    assert all("Van Gogh" in p.prompt and "Van Gogh" not in p.anchor for p in pairs), "the anchor is the sentence without it"
    assert all("Van Gogh" in p for p in plan.erase.prompts) and not any("Van Gogh" in p for p in plan.retain.prompts)


def test_sd1_plan_cycles_through_the_neighbours_and_names_its_context():
    plan = SD1Domain().evaluation_plan("church", None, ["parachute", "golf ball"], 10, 20, seed=1)
    assert plan.target == "object" and plan.groups["object"] == ("church", "parachute", "golf ball")
    assert Counter(plan.retain.asked["object"]) == {"parachute": 10, "golf ball": 10}
    assert set(plan.groups) == {"object", "colour", "style"} and plan.groups["style"] == BUILT_IN_LISTS["styles"]
    for prompt, colour in zip(plan.retain.prompts, plan.retain.asked["colour"]):
        assert colour in prompt
    assert len(set(plan.erase.seeds + plan.retain.seeds)) == 30


def test_sd1_kinds_neighbours_and_refusals():
    domain = SD1Domain()
    assert [domain.infer_kind(c) for c in ("Van Gogh", "church", "NUDITY", "Frida Kahlo", "a blue kite")] == \
        ["style", "object", "nudity", "instance", None]
    assert domain.default_neighbours("nudity", None) == ["clothed"]
    assert "Van Gogh" not in domain.default_neighbours("van gogh", "style")
    with pytest.raises(ValueError, match="kind of 'a blue kite' cannot be told"):
        domain.evaluation_plan("a blue kite", None, None, 4, 4, 0)
    with pytest.raises(ValueError, match="no neighbours"):
        domain.evaluation_plan("church", "object", ["church"], 4, 4, 0)
    assert not domain.scoreable("church", "object"), "no judge, no metrics"
    assert domain.detector("church", "object") is None


def test_a_judge_vocabulary_replaces_the_built_in_lists():
    class Shapes:
        name = "shapes"
        vocabulary = {"styles": ("plain", "striped", "dotted"), "subjects": ("circle", "star")}

        def read(self, images, labels):
            return np.zeros(len(images), dtype=int)

    domain = SD1Domain(judge=Shapes())
    assert isinstance(Shapes(), Judge)
    assert domain.infer_kind("striped") == "style" and domain.default_neighbours("striped", None) == ["plain", "dotted"]
    plan = domain.evaluation_plan("striped", None, None, 6, 6, 0)
    assert plan.groups["subject"] == ("circle", "star") and plan.groups["colour"] == BUILT_IN_LISTS["colours"]
    detect = domain.detector("striped", None)
    assert detect(np.zeros((3, 8, 8, 3), np.uint8)).tolist() == [1.0, 1.0, 1.0], "index 0 is the concept"


def test_build_domain_names_the_families():
    assert isinstance(build_domain("sd1"), SD1Domain) and isinstance(build_domain("demo"), Domain)
    with pytest.raises(ValueError, match="unknown model family"):
        build_domain("sdxl")


# --- judges --------------------------------------------------------------------------------------

def test_classifier_judge_reads_one_attribute_head(micro_demo):
    judge = micro_demo.domain.judge
    assert isinstance(judge, ClassifierJudge) and isinstance(judge, Judge)
    images = np.random.default_rng(0).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    from kscu.demo.classifier import to_tensor
    from kscu.demo.world import ATTRIBUTES

    full = judge.read(images, ATTRIBUTES["style"])
    assert np.array_equal(full, judge.classifier.predict(to_tensor(images))["style"]), "all values: the classifier's own reading"
    pair = judge.read(images, ["dotted", "striped"])
    assert set(pair.tolist()) <= {0, 1}
    with pytest.raises(ValueError, match="one attribute at a time"):
        judge.read(images, ["red", "star"])


def test_clip_judge_loads_a_save_pretrained_folder_and_reads(micro_clip_dir):
    judge = load_judge(micro_clip_dir)
    assert isinstance(judge, ClipJudge) and isinstance(judge, Judge)
    assert judge.template == "{}" and "striped" in judge.vocabulary["styles"], "kscu_judge.json was read"
    images = np.random.default_rng(1).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    read = judge.read(images, ["striped", "dotted", "plain"])
    assert read.shape == (5,) and set(read.tolist()) <= {0, 1, 2}
    scores = judge.clip_score(images, ["striped"] * 5)
    assert scores.shape == (5,) and np.all((scores >= 0) & (scores <= 100))
    with pytest.raises(ValueError, match="at least one neighbour"):
        judge.read(images, ["striped"])


def test_judges_that_cannot_load_say_what_to_pass(tmp_path, monkeypatch):
    with pytest.raises(JudgeLoadError, match="could not load a CLIP model"):
        load_judge(tmp_path)
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(JudgeLoadError, match="a file, not a folder"):
        load_judge(tmp_path / "file.bin")
    with pytest.raises(JudgeLoadError, match="only the local hub cache"):
        load_judge("nobody/no-such-clip")
    import builtins

    real_import = builtins.__import__

    def no_nudenet(name, *args, **kwargs):
        if name == "nudenet":
            raise ImportError("no nudenet")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nudenet)
    with pytest.raises(JudgeLoadError, match="pip install nudenet"):
        NudeNetJudge()


# --- judge-free retention ------------------------------------------------------------------------

def test_image_change_is_one_for_identical_images_and_low_for_inverted_ones():
    images = np.random.default_rng(2).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    changed = images.copy()
    changed[:2] = 255 - changed[:2]
    change = image_change(images, changed, ["concept", "concept", "neighbour", "neighbour"])
    assert change.ssim_by_prompt["neighbour"] == pytest.approx(1.0) and change.psnr_by_prompt["neighbour"] == IDENTICAL_PSNR
    assert change.concept_ssim < 0.1 and change.neighbour_ssim == pytest.approx(1.0)
    assert json.loads(json.dumps(change.to_dict()))["images"] == 4
    with pytest.raises(ValueError, match="one shape"):
        image_change(images, changed[:, :16], ["a"] * 4)


# --- recipes: the demo world and the generic path ------------------------------------------------

def test_quick_erase_recipe_on_the_demo_domain(micro_demo):
    seen, trained = [], []
    out = quick_erase(micro_demo, "star", iterations=3, n_erase=4, n_retain=6, on_progress=lambda u: seen.append(u.fraction),
                      on_trained=trained.append)
    assert out.result.config.kind == "object", "the kind comes from the domain, not the style preset"
    assert trained == [out.result] and seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    [report], [checks] = out.reports, out.verdicts
    assert report.after is not None and checks is not None
    assert out.grids["prompts"][0].count("star") == 1 and out.change.images == len(out.grids["prompts"]) * len(out.grids["seeds"])
    json.dumps(out.to_dict())


def test_quick_erase_cancelled_after_training_keeps_the_edit(micro_demo):
    calls = {"n": 0}
    kept = []

    def stop_once_trained() -> bool:
        calls["n"] += 1
        return bool(kept)

    with pytest.raises(EditKept, match="edit itself is kept"):
        quick_erase(micro_demo, "red", iterations=2, n_erase=2, n_retain=4, on_trained=kept.append, should_stop=stop_once_trained)
    assert len(kept) == 1


@pytest.fixture(scope="module")
def generic_micro(micro_demo_dir, micro_clip_dir):
    """The micro demo model loaded as an unknown SD1.x pipeline, judged by the micro CLIP."""
    return load_model(str(micro_demo_dir), device="cpu", family="sd1", judge=str(micro_clip_dir))


def test_the_generic_path_runs_every_recipe(generic_micro):
    assert generic_micro.family == "sd1" and isinstance(generic_micro.domain.judge, ClipJudge)
    out = quick_erase(generic_micro, "striped", iterations=2, n_erase=4, n_retain=4)
    assert out.result.config.kind == "style" and out.result.config.preserve == (), "no demo preset knowledge"
    [report] = out.reports
    assert set(report.before["cra"]) == {"subject", "colour"}
    assert "clip_score" in report.before and report.judge.startswith("CLIP")
    esd = unlearn(generic_micro, UnlearnConfig("striped", method="esd", iterations=2))
    both = compare(generic_micro, {"KSCU": out.result, "ESD": esd}, seeds=[0, 1], n_erase=4, n_retain=4)
    assert set(both.reports) == set(both.changes) == set(both.verdicts) == {"KSCU", "ESD"} and both.others == {}, "one concept each"
    assert both.reports["KSCU"].before == both.reports["ESD"].before, "one base, measured once"
    from kscu.influence import analyze

    report = analyze(generic_micro, "striped", num_steps=4, seeds=2, causal_seeds=2, switch_points=3)
    neighbours = generic_micro.domain.default_neighbours("striped", report.kind)
    assert [c.measure for c in report.curves] == ["gap", "causal_from", "causal_until"] + ["neighbour_until"] * len(neighbours), \
        "the judge drives the causal measure, the neighbours' curves too"


def test_compare_without_a_judge_still_shows_image_change(micro_demo_dir):
    bare = load_model(str(micro_demo_dir), device="cpu", family="sd1")
    result = unlearn(bare, UnlearnConfig("Van Gogh", iterations=2))
    out = compare(bare, {"KSCU": result}, seeds=[0])
    assert out.reports == {} and out.verdicts == {}
    assert out.grids["KSCU"]["prompts"][0] == "Van Gogh" and 0 < out.changes["KSCU"].images
    with pytest.raises(ValueError, match="different concepts"):
        compare(bare, {"a": result, "b": unlearn(bare, UnlearnConfig("church", iterations=1))})
    assert copy.copy(out.changes["KSCU"]).ssim <= 1.0


# --- the shipped model as an unknown SD1.x pipeline, judged by the shipped CLIP ---------------------

@pytest.fixture(scope="module")
def generic_shipped():
    return load_model(None, device="cpu", family="sd1", judge=str(SHAPE_CLIP))


@pytest.mark.slow
def test_shipped_clip_judge_agrees_with_the_exact_classifier(demo_model, generic_shipped):
    """UA / IRA / CRA read by the zero-shot CLIP and by the exact classifier on the same images,
    before and after the striped, star and red preset edits (benchmarks/judge_agreement.py's sets):
    every figure within 5 points. (The judge at 8-px patches read 8 of the unedited model's 100
    stars as squares against the exact judge's 1; at 4-px patches it agrees.)"""
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    from judge_agreement import agreement

    for concept in ("striped", "star", "red"):
        result = unlearn(demo_model, UnlearnConfig(concept))
        pairs = agreement(generic_shipped, demo_model.domain.judge, result.apply(generic_shipped), concept, result.config.kind, 100, 120)
        for side, metrics in pairs.items():
            for name, (clip, exact) in metrics.items():
                assert abs(clip - exact) <= 0.05, f"{concept} {side} {name}: CLIP {clip:.3f}, exact {exact:.3f}"
        assert pairs["after"]["UA"][1] >= pairs["before"]["UA"][1] + 0.5, f"{concept}: the edit erases, as the exact judge sees it"


@pytest.mark.slow
def test_quick_erase_compare_and_causal_influence_on_the_generic_path(generic_shipped):
    """The non-demo path end to end: the generic domain's phrasing and presets, the CLIP judge."""
    from kscu.influence import analyze

    out = quick_erase(generic_shipped, "striped", iterations=20, n_erase=24, n_retain=24)
    assert out.result.config.kind == "style" and out.result.config.lr == 1e-5, "the paper's SD1.4 preset"
    [report] = out.reports
    assert report.before["detection_rate"] >= 0.8, "the CLIP judge sees the stripes the base model draws"
    assert set(report.before["cra"]) == {"subject", "colour"} and len(out.verdicts) == 1
    assert out.grids["prompts"][0] == "striped" and out.change.neighbour_ssim is not None
    both = compare(generic_shipped, {"KSCU": out.result}, seeds=[0, 1], n_erase=24, n_retain=24)
    assert both.reports["KSCU"].before == report.before, "same prompts and seeds, same base readings"
    report = analyze(generic_shipped, "striped", num_steps=10, seeds=2, causal_seeds=8, switch_points=5)
    until = report.curve("causal_until")
    assert until is not None and until.value[-1] - until.value[0] >= 0.5, "full concept vs anchor only: the judge sees the difference"

"""Behaviour on the shipped demo model, through the documented CLI: erasing "striped" (or "star") makes the
model draw stripes (stars) far less often, and the other styles, shapes, colours and backgrounds survive.

The example of the README, run as a user would:
    python -m kscu unlearn --concept striped --kind style --out runs/striped
    python -m kscu evaluate --edit runs/striped --json

Thresholds: detection >= 0.90 before and <= 0.10 after; IRA and every CRA within 5 points (the
retention goal for every seed), and the workbench's own verdict "passed", which needs each of those
to hold over its whole 95 % interval (8-point bound). Measured on the shipped model with the style
preset (lr 1.5e-4, 200 iterations, "striped" mapped to "plain", dotted and checkered kept at weight
6, a pool of 64 trajectories of the unedited model), training seed 0 (the CLI default): striped
detected in 96% of the held-out images before, 1% after; IRA 1.000 -> 0.983 (seeds 1 and 2 alike:
docs/results.md, "Retention levers"). Walking one trajectory instead (the paper's reuse, the
previous preset) lost 5.8 points on this seed and 9.2 / 11.7 on the others.
"""
import json

import pytest

from test_cli import run_cli

pytestmark = pytest.mark.slow  # trains the full preset and evaluates 220 prompts twice

MAX_CRA_CHANGE = 0.05
"""Each CRA may move by at most this much (the retention goal)."""
MAX_IRA_DROP = 0.05
"""IRA may fall by at most this much (the retention goal; measured: 0.017)."""


@pytest.fixture(scope="module")
def striped_report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("erasure") / "striped"
    done = run_cli("unlearn", "--concept", "striped", "--kind", "style", "--out", str(out))
    assert done.returncode == 0, done.stderr
    evaluated = run_cli("evaluate", "--edit", str(out), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    return json.loads(evaluated.stdout)


def test_the_unedited_model_draws_stripes_when_asked(striped_report):
    assert striped_report["before"]["detection_rate"] >= 0.90


def test_erasing_striped_removes_most_stripes(striped_report):
    before, after = striped_report["before"]["detection_rate"], striped_report["after"]["detection_rate"]
    assert after <= 0.10, f"striped still detected in {after:.0%} of images (before: {before:.0%})"


def test_other_styles_and_attributes_survive(striped_report):
    before, after = striped_report["before"], striped_report["after"]
    assert after["ira"] >= before["ira"] - MAX_IRA_DROP
    for attribute, accuracy in before["cra"].items():
        assert abs(after["cra"][attribute] - accuracy) <= MAX_CRA_CHANGE, attribute


def test_the_verdict_passes_on_the_whole_intervals(striped_report):
    checks = striped_report["verdict"]
    assert checks["outcome"] == "passed", {name: c["outcome"] for name, c in checks["checks"].items()}


@pytest.fixture(scope="module")
def star_edit(tmp_path_factory) -> tuple[dict, dict]:
    """The object preset as a user gets it: no --kind (the domain infers "object"), star mapped to a
    square. Measured, training seed 0: star read on 1 % of the held-out images after, the worst
    change -0.8 points (IRA), verdict passed (docs/results.md, "Object preset"); with the earlier
    target, the sentence without the shape, 16 % of the stars stayed. Returns (run.json's config,
    the evaluation)."""
    out = tmp_path_factory.mktemp("erasure") / "star"
    done = run_cli("unlearn", "--concept", "star", "--out", str(out))
    assert done.returncode == 0, done.stderr
    evaluated = run_cli("evaluate", "--edit", str(out), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    return json.loads((out / "run.json").read_text())["config"], json.loads(evaluated.stdout)


def test_erasing_star_turns_stars_into_squares_and_keeps_the_rest(star_edit):
    config, report = star_edit
    assert (config["kind"], config["anchor"]) == ("object", "square")
    before, after = report["before"], report["after"]
    assert before["detection_rate"] >= 0.90 and after["detection_rate"] <= 0.05
    assert after["ira"] >= before["ira"] - MAX_IRA_DROP, "the other shapes are still drawn right"
    for attribute, accuracy in before["cra"].items():
        assert abs(after["cra"][attribute] - accuracy) <= MAX_CRA_CHANGE, attribute
    assert report["verdict"]["outcome"] == "passed"

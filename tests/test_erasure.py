"""Behaviour on the shipped demo model, through the documented CLI: erasing "striped" (or "star", or "red") makes
the model draw stripes (stars, red) far less often, and the other styles, shapes, colours and backgrounds survive.

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


def cli_edit(tmp_path_factory, concept: str, *flags: str) -> tuple[dict, dict]:
    """`unlearn --concept C [flags]` as a user runs it (without --kind the domain infers it), then
    `evaluate --json`. Returns (run.json's config, the evaluation)."""
    out = tmp_path_factory.mktemp("erasure") / concept
    done = run_cli("unlearn", "--concept", concept, *flags, "--out", str(out))
    assert done.returncode == 0, done.stderr
    evaluated = run_cli("evaluate", "--edit", str(out), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    return json.loads((out / "run.json").read_text())["config"], json.loads(evaluated.stdout)


def assert_the_rest_kept(report: dict) -> None:
    """IRA and every CRA within 5 points of the unedited model's."""
    before, after = report["before"], report["after"]
    assert after["ira"] >= before["ira"] - MAX_IRA_DROP, "the concept's neighbours are still drawn right"
    for attribute, accuracy in before["cra"].items():
        assert abs(after["cra"][attribute] - accuracy) <= MAX_CRA_CHANGE, attribute


def assert_erased_and_the_rest_kept(report: dict) -> None:
    """Detection >= 0.90 before and <= 0.05 after, and the rest kept."""
    assert report["before"]["detection_rate"] >= 0.90 and report["after"]["detection_rate"] <= 0.05
    assert_the_rest_kept(report)


@pytest.fixture(scope="module")
def striped_report(tmp_path_factory) -> dict:
    return cli_edit(tmp_path_factory, "striped", "--kind", "style")[1]  # the README's example, kind given


def test_the_unedited_model_draws_stripes_when_asked(striped_report):
    assert striped_report["before"]["detection_rate"] >= 0.90


def test_erasing_striped_removes_most_stripes(striped_report):
    before, after = striped_report["before"]["detection_rate"], striped_report["after"]["detection_rate"]
    assert after <= 0.10, f"striped still detected in {after:.0%} of images (before: {before:.0%})"


def test_other_styles_and_attributes_survive(striped_report):
    assert_the_rest_kept(striped_report)


def test_the_verdict_passes_on_the_whole_intervals(striped_report):
    checks = striped_report["verdict"]
    assert checks["outcome"] == "passed", {name: c["outcome"] for name, c in checks["checks"].items()}


@pytest.fixture(scope="module")
def star_edit(tmp_path_factory) -> tuple[dict, dict]:
    """The object preset, star mapped to a square. Measured, training seed 0: star read on 1 % of
    the held-out images after, the worst change -0.8 points (IRA), verdict passed (docs/results.md,
    "Object preset"); with the earlier target, the sentence without the shape, 16 % of the stars
    stayed."""
    return cli_edit(tmp_path_factory, "star")


def test_erasing_star_turns_stars_into_squares_and_keeps_the_rest(star_edit):
    config, report = star_edit
    assert (config["kind"], config["anchor"]) == ("object", "square")
    assert_erased_and_the_rest_kept(report)
    assert report["verdict"]["outcome"] == "passed"


@pytest.fixture(scope="module")
def red_edit(tmp_path_factory) -> tuple[dict, dict]:
    """The colour preset, red mapped to yellow on a pool of trajectories, purple and blue kept.
    Measured, training seed 0: red read on 0 % of the held-out images after, the worst change -3.3
    points (IRA, interval to -8.3: verdict undecided); with the earlier preset (the sentence without
    the colour, no pool) the red shapes lost their style on 8 % of the images, 17 % on seed 1
    (docs/results.md, "Colour preset, mapped to yellow")."""
    return cli_edit(tmp_path_factory, "red")


def test_erasing_red_turns_red_into_yellow_and_keeps_the_rest(red_edit):
    config, report = red_edit
    assert (config["kind"], config["anchor"], config["preserve"], config["pool"]) == ("colour", "yellow", ["purple", "blue"], 64)
    assert_erased_and_the_rest_kept(report)
    assert report["verdict"]["outcome"] != "failed"

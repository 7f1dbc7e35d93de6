"""Behaviour on the shipped demo model, through the documented CLI: erasing "striped" makes the
model draw stripes far less often, and the other styles, shapes, colours and backgrounds survive.

The example of the README, run as a user would:
    python -m kscu unlearn --concept striped --kind style --out runs/striped
    python -m kscu evaluate --edit runs/striped --json

Thresholds: the issue's. Detection >= 0.90 before and <= 0.10 after, IRA and every CRA within 8
points. Measured on the shipped model (16,300 UNet steps; style preset: lr 1.5e-4, 200 iterations,
"striped" mapped to "plain", the look-alike styles dotted and checkered kept at weight 6; README,
"Erase 'striped' end to end"): striped detected in 96% of the held-out "striped" images before, 1%
after; IRA 1.000 -> 0.942, CRA moved by at most 0.8 points. This is training seed 0 (the CLI
default); seeds 1 and 2 erased as well (1%, 0%) but lost 9.2 and 11.7 points of IRA, so the
retention bound holds for this seed, not for every seed.
"""
import json

import pytest

from test_cli import run_cli

pytestmark = pytest.mark.slow  # trains the full preset and evaluates 220 prompts twice

MAX_CRA_CHANGE = 0.08
"""Each CRA may move by at most this much (the issue's criterion)."""
MAX_IRA_DROP = 0.08
"""IRA may fall by at most this much (the issue's criterion; measured: 0.058)."""


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

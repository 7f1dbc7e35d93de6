"""The benchmark scripts run end to end (--smoke, micro model) and their shared pieces compute
what they claim: the scorer matches evaluate_edit, the cost model matches the trainer."""
import json
import subprocess
import sys
from dataclasses import replace

import pytest

from conftest import HANG_GUARD_SECONDS, REPO

sys.path.insert(0, str(REPO / "benchmarks"))

from _common import checked_forwards, cost_model, first_crossing, marks, score  # noqa: E402

from kscu.config import UnlearnConfig  # noqa: E402
from kscu.evaluation import evaluate_edit  # noqa: E402
from kscu.trainer import unlearn  # noqa: E402

DEMO_SCRIPTS = ["kscu_vs_esd", "window_ablation", "influence_cost", "end_to_end", "preset_sweep", "soak", "safety_checks", "red_team", "retention",
                "lora_rank", "multi_concept"]


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{name}.py"), "--smoke", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)


@pytest.mark.slow
@pytest.mark.parametrize("name", DEMO_SCRIPTS + ["sd14_scale", "judge_agreement"])
def test_script_runs_and_writes_its_results(name, micro_demo_dir, micro_clip_dir, tmp_path):
    args = ["--out", str(tmp_path)] + ([] if name == "sd14_scale" else ["--model", str(micro_demo_dir)])
    args += ["--judge", str(micro_clip_dir)] if name == "judge_agreement" else []
    done = run_script(name, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    results = json.loads((tmp_path / summary["results"].rsplit("/", 1)[-1]).read_text())
    assert results["smoke"] is True and results["benchmark"] == summary["results"].rsplit("/", 1)[-1].removesuffix("_smoke.json")
    assert list(tmp_path.glob("*_smoke.png")), "every script saves a plot"


def test_score_equals_evaluate_edit(micro_demo):
    result = unlearn(micro_demo, UnlearnConfig("striped", iterations=3, num_steps=10))
    edited = result.apply(micro_demo)
    report = evaluate_edit(micro_demo, edited, "striped", n_erase=5, n_retain=6, num_steps=3)
    assert score(micro_demo, micro_demo.unet, "striped", 5, 6, num_steps=3) == report.before
    assert score(micro_demo, edited, "striped", 5, 6, num_steps=3) == report.after


@pytest.mark.parametrize("method,start", [("kscu", 3), ("esd", None)])
def test_cost_model_matches_the_trainer(micro_demo, method, start):
    config = UnlearnConfig("star", kind="object", method=method, iterations=9, num_steps=8, start_step=start)
    result = unlearn(micro_demo, config)
    per_iteration = checked_forwards(result, micro_demo.domain)  # raises when they disagree
    cost = cost_model(config, micro_demo.domain)
    assert len(per_iteration) == 9 and cost.targets == [3] * 9  # anchored demo prompts: c, "" and the anchor
    if method == "kscu":  # windows [3, 8): from noise at 3, then reuse; the table wraps after 5
        assert cost.sampling == [6, 2, 2, 2, 2, 6, 2, 2, 2] and cost.predictions == 2
    else:
        assert cost.sampling == [2 * k for k in result.steps] and cost.predictions == 1


def test_cost_model_counts_trajectory_rows_pools_and_kept_prompts(micro_demo):
    config = UnlearnConfig("striped", kind="style", iterations=7, num_steps=6, start_step=3, trajectories=3, preserve=("dotted",))
    result = unlearn(micro_demo, config)
    checked_forwards(result, micro_demo.domain)  # raises when the cost model and the trainer disagree
    for variant in (replace(config, method="esd"), replace(config, pool=5), replace(config, pool=3, preserve=())):
        checked_forwards(unlearn(micro_demo, variant), micro_demo.domain)


def test_first_crossing_interpolates_and_says_when_never():
    assert first_crossing([0, 10, 20], [0.5, 0.9, 1.0], 0.95) == pytest.approx(15.0)
    assert first_crossing([0, 10], [0.96, 1.0], 0.95) == 0
    assert first_crossing([0, 10], [0.2, 0.5], 0.95) is None


def test_marks_cover_the_run():
    assert marks(250, [0.25, 0.5, 0.75, 1.0]) == [62, 125, 188, 250]
    assert marks(3, [0.01, 1.0]) == [1, 3]


def test_cost_model_follows_the_generic_domains_mixed_anchors(micro_demo_dir):
    """The SD1.x templates mix an empty anchor (the bare concept) with sentence anchors: the cost
    model replays the trainer's choice of phrasing per trajectory."""
    from kscu.models import load_model

    generic = load_model(str(micro_demo_dir), device="cpu", family="sd1")
    config = UnlearnConfig("Van Gogh", iterations=40, num_steps=8, start_step=4, seed=1)  # seed 1 draws both kinds of phrasing
    result = unlearn(generic, config)
    assert set(cost_model(config, generic.domain).targets) == {2, 3}
    checked_forwards(result, generic.domain)  # raises when they disagree

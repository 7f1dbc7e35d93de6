"""The command line: plumbing on the micro model, readable errors, exit codes."""
import json
import subprocess
import sys

import pytest

from conftest import HANG_GUARD_SECONDS, REPO


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kscu", *args], cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)


@pytest.mark.slow
def test_unlearn_evaluate_generate_export_on_a_micro_model(micro_demo_dir, tmp_path):
    model = str(micro_demo_dir)
    out = tmp_path / "striped"
    done = run_cli("unlearn", "--model", model, "--concept", "striped", "--kind", "style", "--iterations", "4",
                   "--num-steps", "10", "--preserve", "dotted, checkered", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["config"]["iterations"] == 4 and (out / "edit.safetensors").exists()
    assert summary["config"]["preserve"] == ["dotted", "checkered"]
    assert json.loads((out / "run.json").read_text())["config"]["preserve"] == ["dotted", "checkered"]

    evaluated = run_cli("evaluate", "--model", model, "--edit", str(out), "--n-erase", "4", "--n-retain", "8",
                        "--steps", "3", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["concept"] == "striped" and report["before"] and report["after"]
    assert set(report["after"]) >= {"ua", "ira", "cra", "detection_rate"}

    image = tmp_path / "star.png"
    generated = run_cli("generate", "--model", model, "--edit", str(out), "--prompt", "a red star", "--seeds", "0,1",
                        "--steps", "3", "--out", str(image))
    assert generated.returncode == 0, generated.stderr
    assert image.exists()

    exported = run_cli("export", "--model", model, "--edit", str(out), "--out", str(tmp_path / "pipeline"))
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "pipeline" / "model_index.json").exists()


def test_bad_inputs_exit_2_with_one_readable_line(tmp_path):
    missing = run_cli("generate", "--model", str(tmp_path / "nope"), "--prompt", "x", "--out", str(tmp_path / "x.png"))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].startswith("error:") and "Traceback" not in missing.stderr
    pickle = tmp_path / "model.ckpt"
    pickle.write_bytes(b"not really")
    refused = run_cli("generate", "--model", str(pickle), "--prompt", "x", "--out", str(tmp_path / "x.png"))
    assert refused.returncode == 2 and "pickle" in refused.stderr.lower()


def test_preserve_flag_defaults_to_the_preset_and_none_turns_it_off():
    from kscu.cli import _preserve_arg

    assert _preserve_arg(None) is None
    assert _preserve_arg(" None ") == ()
    assert _preserve_arg("dotted,checkered") == ("dotted", "checkered")


def test_anchor_flag_defaults_to_the_preset_and_none_turns_it_off():
    from kscu.cli import _anchor_arg

    assert _anchor_arg(None) is None
    assert _anchor_arg("NONE") == ""
    assert _anchor_arg("plain") == "plain"


@pytest.mark.slow
def test_quick_erase_compare_and_generic_evaluate_on_a_micro_model(micro_demo_dir, micro_clip_dir, tmp_path):
    model = str(micro_demo_dir)
    quick = run_cli("quick-erase", "--model", model, "--concept", "star", "--iterations", "2", "--n-erase", "4", "--n-retain", "4",
                    "--out", str(tmp_path / "star"), "--grid", str(tmp_path / "quick.png"), "--json")
    assert quick.returncode == 0, quick.stderr
    payload = json.loads(quick.stdout)
    assert payload["config"]["kind"] == "object", "the kind is the domain's guess, not the style preset"
    assert payload["report"]["after"] and set(payload["verdict"]) >= {"passed", "erased_after"}
    assert payload["image_change"]["neighbour_ssim"] is not None and (tmp_path / "quick.png").exists()

    esd = run_cli("unlearn", "--model", model, "--concept", "star", "--method", "esd", "--iterations", "2", "--out", str(tmp_path / "esd"))
    assert esd.returncode == 0, esd.stderr
    both = run_cli("compare", "--model", model, "--edit", str(tmp_path / "star"), "--edit", str(tmp_path / "esd"), "--seeds", "0,1",
                   "--n-erase", "4", "--n-retain", "4", "--grid", str(tmp_path / "both.png"), "--json")
    assert both.returncode == 0, both.stderr
    edits = json.loads(both.stdout)["edits"]
    assert len(edits) == 2 and all(e["report"]["after"] and e["image_change"]["images"] == 4 * 2 for e in edits.values())

    generic = run_cli("evaluate", "--model", model, "--edit", str(tmp_path / "star"), "--family", "sd1", "--judge", str(micro_clip_dir),
                      "--neighbours", "circle,square,triangle", "--n-erase", "4", "--n-retain", "6", "--steps", "3", "--json")
    assert generic.returncode == 0, generic.stderr
    report = json.loads(generic.stdout)
    assert report["family"] == "sd1" and report["neighbours"] == ["circle", "square", "triangle"]
    assert set(report["before"]) >= {"ua", "ira", "cra", "clip_score"} and report["after"]["ua"] is not None
    no_judge = run_cli("evaluate", "--model", model, "--edit", str(tmp_path / "star"), "--family", "sd1", "--n-erase", "2", "--n-retain", "2")
    assert no_judge.returncode == 2 and "need a judge" in no_judge.stderr and "Traceback" not in no_judge.stderr

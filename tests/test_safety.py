"""Nothing lost, nothing silently wrong: every setting is checked before work starts, no existing
file is overwritten unasked, a diverging run stops and saves nothing, a destroyed edit is flagged,
a failed save keeps the trained edit, and the UI's messages and temp files stay tidy.

The CLI rows run the real command line (tests/test_cli.py's run_cli); most of them name a model
that does not exist, so they also show that the check comes before any model is loaded.
"""
from __future__ import annotations

import copy
import hashlib
import os
import shutil
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline

from kscu import export
from kscu.cli import main as cli_main
from kscu.config import UnlearnConfig
from kscu.domain import build_domain
from kscu.divergence import BLOWUP_WINDOW, CHECK_EVERY, DivergenceGuard, UnlearnDiverged
from kscu.export import OutputError, check_edit_output, load_edit, save_edit, save_edit_or_keep
from kscu.jobs import JobBusy, JobRunner
from kscu.sanity import sanity_check
from kscu.trainer import unlearn
from kscu.validation import ConfigError, ConfigWarning, check_config

DEMO = build_domain("demo")
from test_cli import run_cli

TINY = dict(iterations=4, num_steps=10, start_step=5, lr=1e-3)
"""A real but short run on the micro model."""
NO_MODEL = "/no/such/model"
"""A --model that cannot load: a CLI check that names it ran before any model work."""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def edit(micro_demo):
    return unlearn(micro_demo, UnlearnConfig("striped", **TINY))


# --- 1. one check of every setting ---


@pytest.mark.parametrize("settings, field, phrase", [
    (dict(lr=0), "lr", "above 0"),
    (dict(lr=-0.001), "lr", "above 0"),
    (dict(lr=1e3), "lr", "at most 0.01"),
    (dict(lr=float("nan")), "lr", "not a finite number"),
    (dict(lr="3e-4"), "lr", "not a finite number"),
    (dict(iterations=0), "iterations", "0 is not 'use the preset'"),
    (dict(iterations=2.5), "iterations", "not a whole number"),
    (dict(num_steps=1), "num_steps", "2..1,000"),
    (dict(start_step=30, end_step=20), "start_step", "not before its end"),
    (dict(end_step=60), "end_step", "1..50"),
    (dict(start_step=48), "start_step", "below 0.9 x 50"),
    (dict(method="uce"), "method", "kscu or esd"),
    (dict(params="lora"), "params", "xattn, noxattn, full"),
    (dict(kind="texture"), "kind", "choose one of"),
    (dict(guidance=-1.0), "guidance", "at least 0"),
    (dict(eta=float("inf")), "eta", "not a finite number"),
    (dict(seed=-1), "seed", "0..4,294,967,295"),
    (dict(augment="yes"), "augment", "true or false"),
    (dict(preserve="dotted"), "preserve", "not a list"),
    (dict(preserve=("striped",)), "preserve", "both erased and preserved"),
    (dict(preserve_weight=0.0), "preserve_weight", "keep no concepts instead"),
    (dict(concept="  "), "concept", "the concept is empty"),
])
def test_every_setting_is_checked_and_the_message_names_it(settings, field, phrase):
    config = UnlearnConfig(**{"concept": "striped", **settings})
    with pytest.raises(ConfigError, match=phrase) as error:
        config.resolve(DEMO)
    assert error.value.field == field and field in str(error.value)


def test_an_explicit_value_is_never_replaced_by_the_preset():
    preset = UnlearnConfig("striped").resolve(DEMO)
    chosen = UnlearnConfig("striped", iterations=7, lr=1e-5, start_step=0, eta=0.0, lambda2=0.0).resolve(DEMO)
    assert (chosen.iterations, chosen.lr, chosen.start_step, chosen.eta, chosen.lambda2) == (7, 1e-5, 0, 0.0, 0.0)
    assert (preset.iterations, preset.lr, preset.start_step) == (200, 1.5e-4, 24)


def test_a_concept_longer_than_the_text_encoder_reads_is_warned_about(micro_demo):
    long_concept = "striped " * 80  # 80 tokens: SD's CLIP reads 75, the demo model's text encoder 18
    checked = check_config(UnlearnConfig(long_concept, kind="style", **TINY), micro_demo)
    reads = micro_demo.tokenizer.model_max_length - 2
    assert len(checked.warnings) == 1 and f"80 tokens long but the text encoder reads {reads}" in checked.warnings[0]
    assert check_config(UnlearnConfig("striped", **TINY), micro_demo).warnings == ()
    with pytest.warns(ConfigWarning, match="cut off"):
        result = unlearn(micro_demo, UnlearnConfig(long_concept, kind="style", **{**TINY, "iterations": 1}))
    assert result.warnings == list(checked.warnings)


@pytest.mark.parametrize("flags, flag, phrase", [
    (["--lr", "1e3"], "--lr", "at most 0.01"),
    (["--lr", "-0.001"], "--lr", "above 0"),
    (["--lr", "0"], "--lr", "above 0"),
    (["--iterations", "0"], "--iterations", "0 is not 'use the preset'"),
    (["--start-step", "40", "--end-step", "30"], "--start-step", "not before its end"),
    (["--preserve-weight", "0"], "--preserve-weight", "keep no concepts instead"),
])
def test_cli_refuses_bad_settings_before_loading_the_model(tmp_path, flags, flag, phrase):
    done = run_cli("unlearn", "--model", NO_MODEL, "--concept", "striped", *flags, "--out", str(tmp_path / "edit"))
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {flag}: ") and phrase in last and "Traceback" not in done.stderr
    assert not (tmp_path / "edit").exists()


def test_cli_warns_about_a_long_concept_and_prints_no_third_party_notices(micro_demo_dir, tmp_path):
    done = run_cli("unlearn", "--model", str(micro_demo_dir), "--concept", "striped " * 80, "--kind", "style", "--iterations", "1",
                   "--num-steps", "10", "--start-step", "5", "--out", str(tmp_path / "long"))
    assert done.returncode == 0, done.stderr
    assert "warning: concept (concept) is 80 tokens long" in done.stderr
    assert "torchvision" not in done.stderr and "torchvision" not in done.stdout


# --- 2. output safety ---


@pytest.fixture
def model_copy(micro_demo_dir, tmp_path) -> Path:
    """A copy of a model folder whose files the tests try to overwrite."""
    return Path(shutil.copytree(micro_demo_dir, tmp_path / "model"))


def test_cli_never_overwrites_a_model_file(model_copy, tmp_path):
    weights = model_copy / "unet" / "diffusion_pytorch_model.safetensors"
    loose = Path(shutil.copy(weights, tmp_path / "unet-copy.safetensors"))
    hashes = {path: digest(path) for path in (weights, loose)}
    for target, phrase in ((loose, "already exists and is not a KSCU edit"), (weights, "already exists and is not a KSCU edit"),
                           (model_copy / "unet" / "edit.safetensors", "inside the model folder")):
        done = run_cli("unlearn", "--model", NO_MODEL, "--concept", "striped", "--out", str(target))
        assert done.returncode == 2 and phrase in done.stderr and "--force" in done.stderr, done.stderr
    assert {path: digest(path) for path in hashes} == hashes
    assert not (model_copy / "unet" / "edit.safetensors").exists()


def test_an_existing_edit_is_replaced_only_when_asked(edit, tmp_path):
    first = save_edit(edit, tmp_path / "run")
    before = {p.name: digest(p) for p in (tmp_path / "run").iterdir()}
    with pytest.raises(OutputError, match="edit.safetensors already exists and is an earlier KSCU edit"):
        save_edit(edit, tmp_path / "run")
    assert {p.name: digest(p) for p in (tmp_path / "run").iterdir()} == before
    assert save_edit(edit, tmp_path / "run", overwrite=True) == first


def test_unwritable_and_wrong_kinds_of_output_are_refused_before_work(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(OutputError, match="is an existing file, not a folder"):
        check_edit_output(notes)
    with pytest.raises(OutputError, match="is a file; choose another output path"):
        check_edit_output(notes / "edit")
    with pytest.raises(OutputError, match="cannot write to /proc"):
        check_edit_output("/proc/kscu-edit")  # not writable even for root
    if os.geteuid() != 0:  # root writes into a read-only folder anyway
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        with pytest.raises(OutputError, match="cannot write to"):
            check_edit_output(locked / "edit")
    assert notes.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == sorted(["notes.txt"] + (["locked"] if os.geteuid() else []))


def test_cli_refuses_an_unwritable_output_before_loading(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    for out, phrase in (("/proc/kscu-edit", "cannot write to /proc"), (str(notes), "is an existing file, not a folder")):
        done = run_cli("unlearn", "--model", NO_MODEL, "--concept", "striped", "--out", out)
        assert done.returncode == 2 and phrase in done.stderr.strip().splitlines()[-1], done.stderr
    assert notes.read_text() == "mine"


def test_a_save_that_fails_after_training_keeps_the_edit(micro_demo_dir, tmp_path, monkeypatch, capsys):
    """The path was fine when checked, then the disk said no: the CLI writes the edit to the
    fallback folder, says where, and exits 1; the edit there is the one trained."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    asked = tmp_path / "out"
    real_save = export.save_file

    def refuse_asked(tensors, path, metadata=None):
        if Path(path).parent == asked:
            raise OSError(28, "No space left on device")
        real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(export, "save_file", refuse_asked)
    code = cli_main(["unlearn", "--model", str(micro_demo_dir), "--concept", "striped", "--iterations", "2", "--num-steps", "10",
                     "--start-step", "5", "--out", str(asked), "--json"])
    err = capsys.readouterr().err
    kept = list((tmp_path / "cache" / "kscu" / "unsaved-edits").glob("*.safetensors"))
    assert code == 1 and len(kept) == 1
    assert "No space left on device" in err and str(kept[0]) in err
    assert load_edit(kept[0]).config.concept == "striped" and len(load_edit(kept[0]).losses) == 2
    assert not list(asked.glob("*.safetensors")) and not list(asked.glob(".*.tmp"))


def test_save_edit_or_keep_saves_where_asked_when_it_can(edit, tmp_path):
    saved = save_edit_or_keep(edit, tmp_path / "fine")
    assert saved.failure is None and saved.path == tmp_path / "fine" / "edit.safetensors"


# --- 3. divergence and sanity ---


def test_the_guard_stops_on_a_nan_loss_moved_weights_and_a_blown_up_loss():
    start = {"w": torch.ones(4)}
    with pytest.raises(UnlearnDiverged, match="diverged at iteration 3: the loss is nan; lower the learning rate"):
        DivergenceGuard(start, 1e-3).check(3, float("nan"), start)
    guard = DivergenceGuard(start, 1e-3)
    for i in range(1, CHECK_EVERY):
        guard.check(i, 0.1, {"w": torch.full((4,), 3.0)})  # moved 200%, but not a check iteration yet
    with pytest.raises(UnlearnDiverged, match=f"iteration {CHECK_EVERY}: the trained weights moved by 200%"):
        guard.check(CHECK_EVERY, 0.1, {"w": torch.full((4,), 3.0)})
    with pytest.raises(UnlearnDiverged, match="no longer a finite number"):
        DivergenceGuard(start, 1e-3).check(5, 0.1, {"w": torch.tensor([1.0, float("inf"), 1.0, 1.0])}, last=True)
    guard = DivergenceGuard(start, 1e-3)
    losses = [0.1] * BLOWUP_WINDOW + [0.5] * BLOWUP_WINDOW  # 5x: a healthy run's spread
    for i, loss in enumerate(losses, 1):
        guard.check(i, loss, start)
    with pytest.raises(UnlearnDiverged, match="the loss grew"):
        for i in range(len(losses) + 1, len(losses) + BLOWUP_WINDOW + 1):
            guard.check(i, 100.0, start)
    small_start = DivergenceGuard(start, 1e-3)  # the demo colour preset on "red": 0.004 at first, 0.38 later, a sound edit
    for i, loss in enumerate([0.004] * BLOWUP_WINDOW + [0.38] * BLOWUP_WINDOW, 1):
        small_start.check(i, loss, start)


def test_a_diverging_run_stops_saves_nothing_and_leaves_the_base_alone(micro_demo, tmp_path):
    unet = copy.deepcopy(micro_demo.unet)
    name, weight = next((n, p) for n, p in unet.named_parameters() if ".attn2.to_k." in n)
    with torch.no_grad():
        weight[0, 0] = float("inf")
    broken = replace(micro_demo, pipe=StableDiffusionPipeline(**{**micro_demo.pipe.components, "unet": unet}, requires_safety_checker=False))
    before = {n: t.clone() for n, t in unet.state_dict().items()}
    with pytest.raises(UnlearnDiverged, match="diverged at iteration 1: the loss is nan.*Nothing was saved"):
        unlearn(broken, UnlearnConfig("striped", **TINY))
    assert all(torch.equal(t.nan_to_num(), before[n].nan_to_num()) for n, t in unet.state_dict().items())


def test_the_sanity_check_passes_a_small_edit_and_flags_a_destroyed_one(micro_demo, edit):
    assert edit.sanity is not None and edit.sanity.passed and edit.sanity.change < 0.2
    wrecked = copy.deepcopy(micro_demo.unet)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in wrecked.named_parameters():
            if ".attn2." in name:
                p.add_(torch.randn(p.shape, generator=generator) * 20 * p.abs().mean())
    report = sanity_check(micro_demo, wrecked, "striped")
    assert not report.passed and report.change > report.limit
    assert "FAILED" in report.message and "lower the learning rate" in report.message


def test_the_sanity_check_travels_with_the_edit_file(edit, tmp_path):
    loaded = load_edit(save_edit(edit, tmp_path / "e.safetensors"))
    assert loaded.sanity == edit.sanity


# --- 4. jobs and the UI's messages ---


def test_starting_while_a_cancel_is_finishing_says_so():
    started, release = threading.Event(), threading.Event()

    def work(job):
        started.set()
        return release.wait(600)

    runner = JobRunner()
    job = runner.submit("unlearn 'striped'", work)
    with pytest.raises(JobBusy, match="wait for it or cancel it"):
        runner.submit("second", lambda job: None)
    # cancel once it runs: a job cancelled before its thread starts ends at once, with nothing to wait for
    assert started.wait(600)
    job.cancel()
    with pytest.raises(JobBusy, match="still stopping after the cancel.*start again once it shows Cancelled"):
        runner.submit("second", lambda job: None)
    release.set()
    assert job.wait(600)
    assert runner.submit("second", lambda job: "ran").wait(600)


def test_ui_messages_show_file_names_not_server_paths():
    import tempfile

    from ui.common import hide_server_paths

    upload = Path(tempfile.gettempdir()) / "gradio" / "0f3a9c" / "model.safetensors"
    text = hide_server_paths(f"{upload} is not a valid .safetensors file (header too large). See /home/me/notes.txt.")
    assert text == "model.safetensors is not a valid .safetensors file (header too large). See /home/me/notes.txt."


def test_download_folders_do_not_pile_up(tmp_path):
    from ui.export_tab import KEEP_DOWNLOADS, _fresh_dir
    from ui.state import WorkbenchState

    state = WorkbenchState(files_dir=tmp_path)
    made = [_fresh_dir(state) for _ in range(KEEP_DOWNLOADS + 3)]
    assert sorted(tmp_path.iterdir()) == sorted(made[-KEEP_DOWNLOADS:])

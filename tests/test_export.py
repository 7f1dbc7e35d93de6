"""Edits on disk: round trips, the same images after reloading, full pipeline export, clear
errors on bad files, atomic writes."""
import json
from dataclasses import replace

import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors import safe_open
from safetensors.torch import save_file

from kscu import export
from kscu.export import EditLoadError, check_compatible, export_pipeline, load_edit, save_edit, version_info
from kscu.models import load_model

from conftest import edit_images as images


@pytest.fixture(scope="module")
def edit(micro_edit):
    return micro_edit


def assert_same_edit(a, b):
    assert a.params.keys() == b.params.keys()
    assert all(torch.equal(a.params[n], b.params[n]) and a.params[n].dtype == b.params[n].dtype for n in a.params)
    assert a.config == b.config
    assert (a.losses, a.steps, a.seconds, a.unet_forwards, a.unet_backwards) == (b.losses, b.steps, b.seconds, b.unet_forwards, b.unet_backwards)
    assert (a.base_source, a.base_hash, a.family) == (b.base_source, b.base_hash, b.family)
    assert (a.warnings, a.sanity) == (b.warnings, b.sanity) and a.sanity is not None


def test_round_trip_through_a_file_and_a_folder(edit, tmp_path):
    file = save_edit(edit, tmp_path / "striped.safetensors")
    assert file == tmp_path / "striped.safetensors"
    assert_same_edit(load_edit(file), edit)

    written = save_edit(edit, tmp_path / "run")
    assert written == tmp_path / "run" / "edit.safetensors"
    assert_same_edit(load_edit(tmp_path / "run"), edit)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["config"] == edit.config.to_dict() and run["losses"] == edit.losses
    assert run["base_hash"] == edit.base_hash and run["versions"] == version_info()
    assert [p.name for p in tmp_path.rglob("*.tmp")] == []


def test_saved_files_are_readable_as_a_plain_open_would_make_them(edit, tmp_path):
    """safetensors writes 0600; an edit in a shared folder must be readable by the others the umask allows."""
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    folder = save_edit(edit, tmp_path / "run").parent
    for written in (folder / "edit.safetensors", folder / "run.json"):
        assert written.stat().st_mode & 0o777 == 0o666 & ~mask, written.name


def test_the_file_carries_its_provenance_as_strings(edit, tmp_path):
    with safe_open(str(save_edit(edit, tmp_path / "e.safetensors")), framework="pt") as f:
        meta = f.metadata()
    cfg = edit.config
    assert meta["format"] == "kscu-edit" and meta["format_version"] == "1"
    assert (meta["method"], meta["concept"], meta["kind"], meta["params"]) == (cfg.method, cfg.concept, cfg.kind, cfg.params)
    assert (meta["start_step"], meta["end_step"], meta["num_steps"], meta["iterations"]) == tuple(map(str, (cfg.start_step, cfg.end_step, cfg.num_steps, cfg.iterations)))
    assert (float(meta["lr"]), int(meta["seed"]), meta["anchor"]) == (cfg.lr, cfg.seed, cfg.anchor) == (cfg.lr, cfg.seed, "plain")  # the demo style preset's anchor
    assert (meta["base_model"], meta["base_hash"], meta["family"]) == (edit.base_source, edit.base_hash, "demo")
    assert meta["torch_version"] == torch.__version__ and meta["created"].endswith("+00:00")
    assert json.loads(meta["config"]) == cfg.to_dict()
    assert all(isinstance(v, str) for v in meta.values())


def test_a_reloaded_edit_gives_exactly_the_same_images(micro_demo, edit, tmp_path):
    in_memory = images(micro_demo, edit.apply(micro_demo))
    reloaded = load_edit(save_edit(edit, tmp_path / "e.safetensors"))
    assert check_compatible(reloaded, micro_demo) is None
    assert (images(micro_demo, reloaded.apply(micro_demo)) == in_memory).all()
    assert not (images(micro_demo, micro_demo.unet) == in_memory).all()  # the edit does change the images


def test_the_exported_pipeline_loads_offline_and_gives_the_same_images(micro_demo, edit, tmp_path):
    out = export_pipeline(micro_demo, edit, tmp_path / "exported")
    assert not list(out.rglob("*.bin")) and list(out.rglob("*.safetensors"))
    pipe = StableDiffusionPipeline.from_pretrained(out, local_files_only=True)
    assert all(torch.equal(pipe.unet.state_dict()[n], edit.params[n]) for n in edit.params)
    reloaded = load_model(str(out), device="cpu")  # still a demo model: classifier/ came along
    assert reloaded.family == "demo" and reloaded.domain.judge is not None
    assert (images(reloaded, reloaded.unet) == images(micro_demo, edit.apply(micro_demo))).all()
    provenance = json.loads((out / "kscu_edit.json").read_text())
    assert provenance["config"] == edit.config.to_dict() and provenance["base_hash"] == micro_demo.model_hash
    assert sorted(edit.params) == provenance["edit_tensors"]
    # an earlier export is replaced only when asked; an unrelated folder never is
    with pytest.raises(ValueError, match="holds an earlier KSCU export.*overwrite=True"):
        export_pipeline(micro_demo, edit, out)
    assert export_pipeline(micro_demo, edit, out, overwrite=True) == out and (out / "model_index.json").is_file()
    unrelated = tmp_path / "photos"
    unrelated.mkdir()
    (unrelated / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="not an earlier KSCU export"):
        export_pipeline(micro_demo, edit, unrelated)
    assert (unrelated / "holiday.jpg").read_bytes() == b"x"


def test_bad_files_give_clear_errors(edit, tmp_path):
    with pytest.raises(EditLoadError, match="does not exist"):
        load_edit(tmp_path / "missing.safetensors")
    with pytest.raises(EditLoadError, match="no edit.safetensors in the folder"):
        load_edit(tmp_path)
    (tmp_path / "junk.safetensors").write_bytes(b"this is not a safetensors file at all")
    with pytest.raises(EditLoadError, match="junk.safetensors is not a valid .safetensors file"):
        load_edit(tmp_path / "junk.safetensors")
    good = save_edit(edit, tmp_path / "good.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(good[:-100])
    with pytest.raises(EditLoadError, match="is not a valid .safetensors file"):
        load_edit(tmp_path / "cut.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(EditLoadError, match="not a KSCU edit: metadata 'format' missing"):
        load_edit(tmp_path / "model.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "newer.safetensors"), metadata={"format": "kscu-edit", "format_version": "2"})
    with pytest.raises(EditLoadError, match="format_version '2' is not supported"):
        load_edit(tmp_path / "newer.safetensors")


def test_compatibility_warns_on_other_weights_and_refuses_other_shapes(micro_demo, edit):
    other_weights = replace(edit, base_hash="0123456789abcdef")
    warning = check_compatible(other_weights, micro_demo)
    assert warning and "0123456789abcdef" in warning and micro_demo.model_hash in warning
    name = next(iter(edit.params))
    with pytest.raises(ValueError, match="made for another model.*shape"):
        check_compatible(replace(edit, params={**edit.params, name: torch.zeros(3, 3)}), micro_demo)
    with pytest.raises(ValueError, match="made for another model.*do not exist"):
        check_compatible(replace(edit, params={"no.such.weight": torch.zeros(1)}), micro_demo)


def test_a_failed_save_leaves_no_partial_file_and_keeps_the_old_one(edit, tmp_path, monkeypatch):
    target = save_edit(edit, tmp_path / "e.safetensors")
    before = target.read_bytes()

    def crash(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(export, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_edit(edit, target, overwrite=True)
    with pytest.raises(OSError, match="disk full"):
        save_edit(edit, tmp_path / "new.safetensors")
    assert target.read_bytes() == before and not (tmp_path / "new.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.safetensors"]


def test_a_failed_export_leaves_no_folder_behind(micro_demo, edit, tmp_path, monkeypatch):
    def crash(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(StableDiffusionPipeline, "save_pretrained", crash)
    with pytest.raises(OSError, match="disk full"):
        export_pipeline(micro_demo, edit, tmp_path / "exported")
    assert list(tmp_path.iterdir()) == []

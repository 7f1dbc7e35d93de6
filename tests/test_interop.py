"""Edits for other tools and from other tools: LoRA files that diffusers loads (both layouts), a
single-file SD1.x checkpoint that diffusers' from_single_file loads, and foreign edits (LoRAs,
files of UNet tensors, whole UNet state dicts) imported and giving the same images; clear errors
for what does not fit."""
import copy
import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors import safe_open
from safetensors.torch import save_file

from kscu.config import IMPORTED
from kscu.export import EditLoadError, OutputError, export_single_file, save_edit
from kscu.importing import open_edit
from kscu.lora import LoraError, low_rank, max_rank, read_lora, save_lora

from conftest import REPO
from conftest import edit_images as images


@pytest.fixture(scope="module")
def edit(micro_edit):
    return micro_edit


def assert_nearly_same(a, b):
    """peft adds up @ down @ x beside W @ x instead of merging: float rounding moves a few pixels by one level."""
    diff = abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 2 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())


def pipeline_with(model, unet) -> StableDiffusionPipeline:
    return StableDiffusionPipeline(**{**model.pipe.components, "unet": unet}, requires_safety_checker=False)


def test_low_rank_is_the_best_approximation_and_full_rank_is_the_edit(micro_demo, edit):
    base = dict(micro_demo.unet.named_parameters())
    errors = []
    for rank in (1, 4, max_rank(edit, micro_demo)):
        approx = low_rank(edit, micro_demo, rank).as_edit(micro_demo).params
        assert set(approx) == {n for n in edit.params if n.endswith(".weight")}
        errors.append(sum(float((approx[n] - edit.params[n]).norm() ** 2) for n in approx))
        name = next(iter(approx))  # Eckart-Young: the error is the energy of the dropped singular values
        s = torch.linalg.svdvals(edit.params[name] - base[name].detach())
        assert float((approx[name] - edit.params[name]).norm() ** 2) == pytest.approx(float((s[rank:] ** 2).sum()), rel=1e-3, abs=1e-10)
    assert errors[0] > errors[1] > 0 and errors[2] < 1e-8 * errors[0]
    assert low_rank(edit, micro_demo, 2).dropped == tuple(sorted(n for n in edit.params if n.endswith(".bias")))


@pytest.mark.parametrize("layout", ["diffusers", "kohya"])
def test_diffusers_loads_the_lora_and_draws_what_the_workbench_measured(micro_demo, edit, layout, tmp_path):
    lora = low_rank(edit, micro_demo, 3)
    path = save_lora(lora, tmp_path / "lora", layout, dtype=torch.float32)
    expected = images(micro_demo, lora.as_edit(micro_demo).apply(micro_demo))
    assert not (expected == images(micro_demo, micro_demo.unet)).all()  # the LoRA does change the images
    pipe = pipeline_with(micro_demo, copy.deepcopy(micro_demo.unet))
    pipe.load_lora_weights(str(path.parent) if layout == "diffusers" else str(path))
    assert_nearly_same(images(micro_demo, pipe.unet), expected)
    imported = open_edit(path, micro_demo)  # our LoRA names its concept
    assert imported.config.concept == "striped" and imported.config.method == IMPORTED
    assert (images(micro_demo, imported.apply(micro_demo)) == expected).all()
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["rank"] == "3" and meta["base_hash"] == micro_demo.model_hash
    assert (meta["ss_network_dim"] == "3") if layout == "kohya" else ("ss_network_dim" not in meta)


def test_a_float16_lora_is_half_the_size_and_merges_to_nearly_the_same_weights(micro_demo, edit, tmp_path):
    lora = low_rank(edit, micro_demo, 4)
    small = save_lora(lora, tmp_path / "half.safetensors")
    full = save_lora(lora, tmp_path / "full.safetensors", dtype=torch.float32)
    saved = full.stat().st_size - small.stat().st_size  # the headers are the same but for a few offset digits
    assert saved == pytest.approx(lora.file_bytes() / 2, abs=100)
    merged, exact = read_lora(small, micro_demo), lora.as_edit(micro_demo).params
    assert all(torch.allclose(merged[n], exact[n], atol=1e-3) for n in exact)


def test_the_single_file_checkpoint_loads_in_diffusers_with_the_same_images(micro_demo, micro_demo_dir, edit, tmp_path):
    path = export_single_file(micro_demo, edit, tmp_path / "edited.safetensors")
    with safe_open(str(path), framework="pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    assert all(k.startswith(("model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer.")) for k in keys)
    assert json.loads(meta["kscu_edit"])["config"] == edit.config.to_dict()
    pipe = StableDiffusionPipeline.from_single_file(str(path), config=str(micro_demo_dir), local_files_only=True, safety_checker=None,
                                                    feature_extractor=None, requires_safety_checker=False)
    assert (images(micro_demo, pipe.unet) == images(micro_demo, edit.apply(micro_demo))).all()
    with pytest.raises(OutputError, match="already exists.*overwrite=True"):
        export_single_file(micro_demo, edit, path)
    with pytest.raises(OutputError, match="ending in .safetensors"):
        export_single_file(micro_demo, edit, tmp_path / "edited.ckpt")
    with pytest.raises(EditLoadError, match="whole single-file checkpoint.*load it as the model"):
        open_edit(path, micro_demo, "striped")


def test_foreign_unet_tensors_import_and_give_the_same_images(micro_demo, edit, tmp_path):
    expected = images(micro_demo, edit.apply(micro_demo))
    trained = tmp_path / "esd-striped.safetensors"  # what ESD's code saves: the trained tensors, diffusers names
    save_file({n: t.contiguous() for n, t in edit.params.items()}, str(trained))
    whole = tmp_path / "unet.safetensors"  # a whole UNet, under "unet."
    state = {**{n: p.detach().clone() for n, p in micro_demo.unet.named_parameters()}, **edit.params}
    save_file({f"unet.{n}": t.contiguous() for n, t in state.items()}, str(whole))
    for path in (trained, whole):
        imported = open_edit(path, micro_demo, "striped")
        assert sorted(imported.params) == sorted(edit.params)  # only what differs from the model is kept
        assert imported.config.concept == "striped" and imported.config.method == IMPORTED and imported.warnings
        assert (images(micro_demo, imported.apply(micro_demo)) == expected).all()
    assert open_edit(save_edit(edit, tmp_path / "ours"), micro_demo).config == edit.config  # ours still load as ours


def test_what_cannot_be_imported_gets_a_clear_error(micro_demo, edit, tmp_path):
    name = next(iter(edit.params))
    cases = {
        "other-shape": ({name: torch.zeros(3, 3)}, "made for another architecture"),
        "other-names": ({"text_model.encoder.layers.0.mlp.fc1.weight": torch.zeros(2, 2)}, "not in .* UNet.*diffusers parameter names"),
        "own-weights": ({name: dict(micro_demo.unet.named_parameters())[name].detach().clone()}, "changes nothing"),
        "lora-other-arch": ({"unet.no_such.block.lora_A.weight": torch.zeros(2, 4), "unet.no_such.block.lora_B.weight": torch.zeros(4, 2)},
                            "not a linear layer of"),
    }
    for stem, (tensors, message) in cases.items():
        save_file(tensors, str(tmp_path / f"{stem}.safetensors"))
        with pytest.raises(EditLoadError, match=message):
            open_edit(tmp_path / f"{stem}.safetensors", micro_demo, "striped")
    save_file({n: t.contiguous() for n, t in edit.params.items()}, str(tmp_path / "nameless.safetensors"))
    with pytest.raises(EditLoadError, match="does not say what it erased: name the concept"):
        open_edit(tmp_path / "nameless.safetensors", micro_demo)
    (tmp_path / "old.ckpt").write_bytes(b"pickle")
    with pytest.raises(EditLoadError, match="pickle files can run code"):
        open_edit(tmp_path / "old.ckpt", micro_demo, "striped")
    with pytest.raises(EditLoadError, match="does not exist"):
        open_edit(tmp_path / "missing.safetensors", micro_demo, "striped")


def test_a_lora_refuses_impossible_ranks_and_tensors_it_cannot_hold(micro_demo, edit):
    limit = max_rank(edit, micro_demo)
    for rank in (0, limit + 1, 2.5):
        with pytest.raises(LoraError, match=f"rank: .* choose a whole number from 1 to {limit}"):
            low_rank(edit, micro_demo, rank)
    conv = "conv_in.weight"
    changed = replace(edit, params={**edit.params, conv: dict(micro_demo.unet.named_parameters())[conv].detach() + 1})
    with pytest.raises(LoraError, match="linear layers only.*conv_in.weight.*single file or a pipeline"):
        low_rank(changed, micro_demo, 2)


def test_the_export_command_writes_each_form_and_refuses_bad_input(micro_demo_dir, edit, tmp_path):
    run = save_edit(edit, tmp_path / "run").parent

    def kscu(*args):
        return subprocess.run([sys.executable, "-m", "kscu", "export", "--model", str(micro_demo_dir), "--edit", str(run), *args],
                              cwd=REPO, capture_output=True, text=True)

    lora = kscu("--lora", "--rank", "2", "--out", str(tmp_path / "lora"), "--json")
    assert lora.returncode == 0, lora.stderr
    written = json.loads(lora.stdout)["lora"]
    assert sorted(written) == ["diffusers", "kohya"] and all(p.endswith(".safetensors") for p in written.values())
    single = kscu("--single-file", str(tmp_path / "one.safetensors"), "--json")
    assert single.returncode == 0 and (tmp_path / "one.safetensors").is_file(), single.stderr
    for args, message in [(("--lora", "--rank", "0", "--out", str(tmp_path / "r0")), "--rank: 0 is too small"),
                          (("--lora", "--rank", "999", "--out", str(tmp_path / "r999")), "rank: 999 is not possible"),
                          (("--rank", "2", "--out", str(tmp_path / "x")), "belong to a LoRA export: add --lora"),
                          (("--lora", "--out", str(tmp_path / "one.lora.safetensors")), "--out is one file: choose --layout"),
                          ((), "give --out"),
                          (("--single-file", str(tmp_path / "one.safetensors")), "already exists")]:
        bad = kscu(*args)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr, (args, bad.stderr)
    assert not (tmp_path / "r999").exists() and not (tmp_path / "x").exists() and not (tmp_path / "one.lora.safetensors").exists()

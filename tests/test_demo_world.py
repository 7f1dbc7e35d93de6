"""The demo world: deterministic generator, prompts, the shipped classifier and pipeline,
and the resumable training script."""
import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

from conftest import DEMO_MODEL, REPO
from kscu.demo.classifier import ConceptClassifier, to_tensor
from kscu.demo.prompts import HELD_OUT_TEMPLATES, TRAIN_TEMPLATES, prompt_for, training_prompt
from kscu.demo.world import ATTRIBUTES, Scene, attribute_of, generate


def test_generator_is_deterministic_and_labels_match_scenes():
    images, labels, scenes = generate(40, seed=5)
    images2, labels2, _ = generate(40, seed=5)
    assert images.shape == (40, 64, 64, 3) and images.dtype == np.uint8
    assert np.array_equal(images, images2) and np.array_equal(labels, labels2)
    assert not np.array_equal(images, generate(40, seed=6)[0])
    assert [tuple(l) for l in labels] == [s.labels() for s in scenes]


def test_world_has_the_promised_variety():
    assert len(ATTRIBUTES["shape"]) >= 4 and len(ATTRIBUTES["colour"]) >= 5
    assert len(ATTRIBUTES["style"]) >= 5 and len(ATTRIBUTES["background"]) >= 3
    assert attribute_of("striped") == "style" and attribute_of("star") == "shape" and attribute_of("cat") is None


def test_prompts_name_every_attribute_and_held_out_templates_differ():
    scene = Scene("star", "red", "striped", "dark")
    for template in TRAIN_TEMPLATES + HELD_OUT_TEMPLATES:
        text = prompt_for(scene, template)
        assert all(word in text for word in ("star", "red", "striped", "dark")), text
    assert not set(HELD_OUT_TEMPLATES) & set(TRAIN_TEMPLATES)
    dropped = prompt_for(scene, TRAIN_TEMPLATES[0], drop=frozenset({"style"}))
    assert "striped" not in dropped and "star" in dropped
    import random

    rng = random.Random(0)
    captions = {training_prompt(scene, rng) for _ in range(200)}
    assert "" in captions and len(captions) > 10


def test_shipped_classifier_is_accurate_on_fresh_procedural_images():
    classifier = ConceptClassifier.load(DEMO_MODEL / "classifier")
    images, labels, _ = generate(600, seed=424242)
    predictions = classifier.predict(to_tensor(images))
    for i, name in enumerate(ATTRIBUTES):
        accuracy = (predictions[name] == labels[:, i]).mean()
        assert accuracy >= 0.98, f"{name}: {accuracy:.3f}"


def test_shipped_pipeline_loads_offline_with_diffusers_and_generates_64px():
    pipe = StableDiffusionPipeline.from_pretrained(DEMO_MODEL, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red star on a dark background", num_inference_steps=5, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (64, 64)
    files = {p.suffix for p in DEMO_MODEL.rglob("*") if p.is_file()}
    assert ".bin" not in files and ".ckpt" not in files  # safetensors only


@pytest.mark.slow
def test_training_script_runs_a_micro_config_and_resumes(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    command = [sys.executable, "-m", "kscu.demo.train", "--micro", "--work", str(work), "--out", str(out)]
    subprocess.run(command + ["--unet-steps", "3"], cwd=REPO, check=True, capture_output=True)
    assert json.loads((work / "status.json").read_text())["unet_step"] == 3
    (work / "unet.done").unlink()  # pretend it was interrupted after the checkpoint at step 3
    log = subprocess.run(command + ["--unet-steps", "6"], cwd=REPO, check=True, capture_output=True, text=True).stdout
    assert "resumed at step 3" in log
    assert "classifier:" not in log  # finished stages are not redone
    assert json.loads((work / "status.json").read_text())["unet_step"] == 6
    assert (out / "model_index.json").exists() and (out / "classifier" / "classifier.json").exists()
    # A finished run continues with a second learning-rate cycle (how the shipped model was trained).
    log = subprocess.run(command + ["--unet-steps", "9", "--continue-from", "6", "--restart-lr", "2e-4"],
                         cwd=REPO, check=True, capture_output=True, text=True).stdout
    assert "resumed at step 6" in log and "unet step 9/9" in log
    status = json.loads((work / "status.json").read_text())
    assert status["config"]["unet_restart_step"] == 6
    assert [h["until_unet_step"] for h in status["history"]] == [3, 6], "each earlier setting is kept with its last step"
    assert status["history"][-1]["config"]["unet_steps"] == 6 and status["history"][-1]["config"]["unet_restart_step"] == 0
    # Continuing from a step the checkpoint has not reached is refused, not silently rescheduled.
    (work / "unet.done").unlink()
    failed = subprocess.run(command + ["--unet-steps", "20", "--continue-from", "12"], cwd=REPO, capture_output=True, text=True)
    assert failed.returncode != 0 and "before --continue-from 12" in failed.stderr


@pytest.mark.slow
def test_training_continues_from_an_exported_model_without_its_work_folder(micro_demo_dir, tmp_path):
    """--init-from: how the shipped model is trained on where its work folder is absent (a GPU machine)."""
    work, out = tmp_path / "work", tmp_path / "out"
    command = [sys.executable, "-m", "kscu.demo.train", "--micro", "--work", str(work), "--out", str(out),
               "--init-from", str(micro_demo_dir), "--device", "cpu"]
    exported_at = json.loads((micro_demo_dir / "training.json").read_text())["unet_step"]
    wrong = subprocess.run(command + ["--continue-from", str(exported_at - 1), "--unet-steps", str(exported_at + 3)],
                           cwd=REPO, capture_output=True, text=True)
    assert wrong.returncode != 0 and f"use --continue-from {exported_at}" in wrong.stderr
    shutil.rmtree(work)
    log = subprocess.run(command + ["--continue-from", str(exported_at), "--unet-steps", str(exported_at + 3)],
                         cwd=REPO, check=True, capture_output=True, text=True).stdout
    assert f"resumed at step {exported_at}" in log
    assert "classifier:" not in log and "vae step" not in log, "the model's VAE and judge are reused, not retrained"
    status = json.loads((out / "training.json").read_text())
    assert status["unet_step"] == exported_at + 3 and status["history"][-1]["until_unet_step"] == exported_at
    vae_config = lambda folder: json.loads((folder / "vae" / "config.json").read_text())["scaling_factor"]
    assert vae_config(out) == vae_config(micro_demo_dir), "the UNet was trained on the model's latent scaling"
    assert (out / "classifier" / "classifier.safetensors").read_bytes() == (micro_demo_dir / "classifier" / "classifier.safetensors").read_bytes()


def test_judge_training_can_start_from_a_saved_judge(micro_clip_dir, tmp_path):
    """--init: a fresh schedule on a saved judge's weights (no step: exactly those weights; two steps move them)."""
    from safetensors.torch import load_file

    from kscu.demo.train_judge import JudgeTrainConfig, train

    same = dataclasses.replace(JudgeTrainConfig.micro(), init=str(micro_clip_dir), steps=0)
    train(tmp_path / "w0", tmp_path / "same", same)
    before, after = load_file(str(micro_clip_dir / "model.safetensors")), load_file(str(tmp_path / "same" / "model.safetensors"))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    train(tmp_path / "w1", tmp_path / "moved", dataclasses.replace(same, steps=2))
    assert f"started from the weights of {micro_clip_dir}" in (tmp_path / "w1" / "train.log").read_text()
    after = load_file(str(tmp_path / "moved" / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_a_judge_resampled_to_finer_patches_reads_an_image_as_the_coarse_one_reads_it_enlarged(micro_clip_dir):
    """finer_patches: the 4-px judge on an image is the 8-px judge on that image upsampled twice
    (nearest, positions resized as transformers resizes them), so a finer run starts where the coarse
    one stands; a patch size that does not divide the old one is refused."""
    from transformers import CLIPModel

    from kscu.demo.train_judge import clip_config, finer_patches, JudgeTrainConfig

    coarse = CLIPModel.from_pretrained(str(micro_clip_dir), dtype=torch.float32).eval()
    assert coarse.config.vision_config.patch_size == 8
    fine = CLIPModel(clip_config(dataclasses.replace(JudgeTrainConfig.micro(), patch_size=4))).eval()
    fine.load_state_dict(finer_patches(coarse.state_dict(), 8, 4))
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        enlarged = torch.nn.functional.interpolate(images, scale_factor=2, mode="nearest")
        want = coarse.get_image_features(pixel_values=enlarged, interpolate_pos_encoding=True).pooler_output
        got = fine.get_image_features(pixel_values=images).pooler_output
        unchanged = coarse.get_image_features(pixel_values=images).pooler_output
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    assert not torch.allclose(got, unchanged, atol=1e-2), "the finer judge must see more than the coarse one on the same image"
    with pytest.raises(ValueError, match="the new size must divide the old"):
        finer_patches(coarse.state_dict(), 8, 3)

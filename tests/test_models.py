"""Model loading (kscu.models) and the SD1 architecture assets (kscu.sd_configs, assets/sd1-config).

Everything here is CPU-only and offline: tiny random SD1-architecture pipelines stand in for real
checkpoints, full SD1 sizes are checked on the meta device (no memory, no weights), and the micro
demo model comes from conftest's session fixture (built once per session by the real trainer).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from kscu import models
from kscu.models import DEMO_MODEL_DIR, LoadedModel, ModelLoadError, describe, load_model, state_dict_hash, unet_hash
from kscu.sd_configs import (
    SD1_CONFIG_DIR,
    random_sd1_pipeline,
    save_single_file,
    sd1_component_configs,
    to_ldm_state_dict,
    unet_to_ldm,
    vae_to_ldm,
)


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_pipe():
    return random_sd1_pipeline("tiny", seed=0)


@pytest.fixture(scope="module")
def tiny_folder(tiny_pipe, tmp_path_factory) -> Path:
    """A tiny random SD1-architecture pipeline saved as a diffusers folder."""
    folder = tmp_path_factory.mktemp("tiny-sd1") / "pipe"
    tiny_pipe.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_file(tiny_pipe, tmp_path_factory) -> Path:
    """The same pipeline as one single-file (LDM layout) .safetensors checkpoint."""
    return save_single_file(tiny_pipe, tmp_path_factory.mktemp("tiny-file") / "tiny-sd1.safetensors")


@pytest.fixture(scope="module")
def tiny_model(tiny_folder) -> LoadedModel:
    return load_model(str(tiny_folder), device="cpu")


def _config_only_folder(tmp_path: Path, src: Path, edit) -> Path:
    """A copy of src's configs (no weights) after edit(configs) changed them."""
    folder = tmp_path / "configs"
    files = ["model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
             "scheduler/scheduler_config.json"]
    configs = {name: json.loads((src / name).read_text()) for name in files}
    edit(configs)
    for name, config in configs.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(config))
    return folder


# ---------------------------------------------------------------------------------------------
# assets/sd1-config: the published SD1.4/1.5 values
# ---------------------------------------------------------------------------------------------


def test_sd1_config_has_the_published_values():
    c = sd1_component_configs("full")
    unet, vae, text, sched = c["unet"], c["vae"], c["text_encoder"], c["scheduler"]
    assert unet["block_out_channels"] == [320, 640, 1280, 1280]
    assert unet["down_block_types"] == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert unet["up_block_types"] == ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3
    assert (unet["layers_per_block"], unet["cross_attention_dim"], unet["attention_head_dim"], unet["sample_size"]) == (2, 768, 8, 64)
    assert unet["use_linear_projection"] is False and unet["in_channels"] == unet["out_channels"] == 4
    assert vae["block_out_channels"] == [128, 256, 512, 512] and vae["latent_channels"] == 4
    assert (vae["scaling_factor"], vae["sample_size"]) == (0.18215, 512)
    assert (text["hidden_size"], text["intermediate_size"], text["num_hidden_layers"], text["num_attention_heads"]) == (768, 3072, 12, 12)
    assert (text["max_position_embeddings"], text["vocab_size"], text["hidden_act"]) == (77, 49408, "quick_gelu")
    assert (text["bos_token_id"], text["eos_token_id"], text["pad_token_id"]) == (0, 2, 1)  # as SD ships them
    assert sched["_class_name"] == "PNDMScheduler"
    assert (sched["beta_start"], sched["beta_end"], sched["beta_schedule"]) == (0.00085, 0.012, "scaled_linear")
    assert sched["steps_offset"] == 1 and sched["skip_prk_steps"] is True
    assert sched["set_alpha_to_one"] is False and sched["clip_sample"] is False and sched["prediction_type"] == "epsilon"
    index = json.loads((SD1_CONFIG_DIR / "model_index.json").read_text())
    assert index["safety_checker"] == [None, None] and index["feature_extractor"] == [None, None]
    assert index["requires_safety_checker"] is False


def test_sd1_config_builds_sd1_sized_modules_on_meta():
    """Parameter counts of the real SD1 UNet / VAE / CLIP ViT-L/14 text encoder."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(SD1_CONFIG_DIR / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(SD1_CONFIG_DIR / "vae"))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(SD1_CONFIG_DIR / "text_encoder"))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(unet) == 859_520_964
    assert count(vae) == 83_653_863
    assert count(text) == 123_060_480


def test_sd1_tokenizer_is_the_real_clip_bpe_with_77_tokens():
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(SD1_CONFIG_DIR / "tokenizer")
    assert tokenizer.model_max_length == 77
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(tokenizer("x", padding="max_length", max_length=77).input_ids) == 77


def test_tiny_scale_keeps_the_sd1_layout(tiny_pipe):
    full, tiny = sd1_component_configs("full"), sd1_component_configs("tiny")
    for key in ("down_block_types", "up_block_types", "layers_per_block", "mid_block_type", "in_channels"):
        assert tiny["unet"][key] == full["unet"][key]
    assert tiny["vae"]["down_block_types"] == full["vae"]["down_block_types"]
    assert tiny["text_encoder"]["max_position_embeddings"] == 77
    assert tiny_pipe.unet.config.cross_attention_dim == tiny_pipe.text_encoder.config.hidden_size == 32
    assert tiny_pipe.vae_scale_factor == 8 and tiny_pipe.tokenizer.model_max_length == 77
    with pytest.raises(ValueError):
        sd1_component_configs("huge")


def test_random_pipelines_are_deterministic_per_seed():
    a, b, c = (random_sd1_pipeline("tiny", seed=s) for s in (3, 3, 4))
    assert unet_hash(a.unet) == unet_hash(b.unet) != unet_hash(c.unet)


# ---------------------------------------------------------------------------------------------
# single-file (LDM) layout
# ---------------------------------------------------------------------------------------------


def test_full_size_ldm_layout_matches_real_keys_and_diffusers_converter():
    """At SD1 size (meta tensors): the names real SD1 checkpoints use, and diffusers' own
    LDM->diffusers converter maps our export back onto exactly the diffusers keys and shapes."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    configs = sd1_component_configs("full")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(configs["unet"])
        vae = AutoencoderKL.from_config(configs["vae"])
    ldm_unet = unet_to_ldm(unet.state_dict(), unet.config)
    ldm_vae = vae_to_ldm(vae.state_dict(), vae.config)
    real = {
        "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
        "input_blocks.3.0.op.weight": (320, 320, 3, 3),
        "middle_block.1.proj_in.weight": (1280, 1280, 1, 1),
        "output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
        "output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
        "output_blocks.11.0.skip_connection.weight": (320, 640, 1, 1),
        "time_embed.0.weight": (1280, 320),
        "out.2.weight": (4, 320, 3, 3),
    }
    for key, shape in real.items():
        assert tuple(ldm_unet[key].shape) == shape, key
    real_vae = {
        "encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
        "encoder.down.1.block.0.nin_shortcut.weight": (256, 128, 1, 1),
        "decoder.up.3.block.0.conv1.weight": (512, 512, 3, 3),
        "decoder.up.1.upsample.conv.weight": (256, 256, 3, 3),
        "decoder.norm_out.weight": (128,),
        "quant_conv.weight": (8, 8, 1, 1),
    }
    for key, shape in real_vae.items():
        assert tuple(ldm_vae[key].shape) == shape, key

    back = convert_ldm_unet_checkpoint({"model.diffusion_model." + k: v for k, v in ldm_unet.items()}, unet.config)
    assert {k: tuple(v.shape) for k, v in back.items()} == {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    back = convert_ldm_vae_checkpoint({"first_stage_model." + k: v for k, v in ldm_vae.items()}, vae.config)
    assert {k: tuple(v.shape) for k, v in back.items()} == {k: tuple(v.shape) for k, v in vae.state_dict().items()}


def test_single_file_round_trip_loads_the_same_weights(tiny_pipe, tiny_folder, tiny_file, tiny_model):
    model = load_model(str(tiny_file), device="cpu", config=str(tiny_folder))
    assert model.family == "sd1" and model.extras["kind"] == "single_file"
    assert model.model_hash == tiny_model.model_hash == unet_hash(tiny_pipe.unet)
    for name in ("unet", "vae", "text_encoder"):
        mine, theirs = getattr(model, name).state_dict(), getattr(tiny_pipe, name).state_dict()
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), name
    assert type(model.pipe.scheduler).__name__ == "PNDMScheduler"
    keys = to_ldm_state_dict(tiny_pipe).keys()
    assert any(k.startswith("cond_stage_model.transformer.text_model.") for k in keys)


def test_single_file_tolerates_the_extra_keys_of_real_checkpoints(tmp_path, tiny_pipe, tiny_folder, tiny_model):
    """Real SD1 files also carry CLIP position_ids, the DDPM schedule buffers and EMA counters."""
    state = to_ldm_state_dict(tiny_pipe)
    state["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    for key in ("betas", "alphas_cumprod", "alphas_cumprod_prev", "posterior_variance", "logvar"):
        state[key] = torch.rand(1000)
    state["model_ema.decay"] = torch.tensor(0.9999)
    state["model_ema.num_updates"] = torch.tensor(100, dtype=torch.int32)
    path = tmp_path / "with-extras.safetensors"
    save_file(state, str(path))
    assert load_model(str(path), device="cpu", config=str(tiny_folder)).model_hash == tiny_model.model_hash


def test_single_file_with_the_default_sd1_config_rejects_other_sizes(tiny_file):
    with pytest.raises(ModelLoadError, match="cross-attention width 32 does not match"):
        load_model(str(tiny_file), device="cpu")


def test_non_sd_safetensors_is_not_an_sd1_checkpoint(tmp_path):
    path = tmp_path / "foo.safetensors"
    save_file({"foo": torch.randn(3, 4)}, str(path))
    with pytest.raises(ModelLoadError, match="not an SD1.x checkpoint"):
        load_model(str(path), device="cpu")


def test_diffusers_component_file_gets_a_hint(tiny_folder):
    with pytest.raises(ModelLoadError, match="one component of a diffusers pipeline"):
        load_model(str(tiny_folder / "unet" / "diffusion_pytorch_model.safetensors"), device="cpu")


@pytest.mark.parametrize(
    "keys, phrase",
    [
        (["model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.model.token_embedding.weight"], "2.x"),
        (["model.diffusion_model.input_blocks.0.0.weight", "conditioner.embedders.0.transformer.x"], "SDXL"),
        (["model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.transformer.text_model.x"], "lacks the VAE"),
    ],
)
def test_other_architectures_in_single_files_are_refused(tmp_path, keys, phrase):
    path = tmp_path / "other.safetensors"
    save_file({k: torch.zeros(2) for k in keys}, str(path))
    with pytest.raises(ModelLoadError, match=phrase):
        load_model(str(path), device="cpu")


def test_truncated_or_corrupt_safetensors(tmp_path, tiny_file):
    truncated = tmp_path / "truncated.safetensors"
    data = tiny_file.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a safetensors file at all" * 10)
    for path in (truncated, garbage):
        with pytest.raises(ModelLoadError, match="truncated or corrupt"):
            load_model(str(path), device="cpu")


# ---------------------------------------------------------------------------------------------
# pickle
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin"])
def test_pickle_checkpoints_are_refused_by_default(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"never unpickled")  # refused before a single byte is read
    with pytest.raises(ModelLoadError, match="pickle checkpoints can run code") as info:
        load_model(str(path), device="cpu")
    assert "allow_pickle=True" in str(info.value) and ".safetensors" in str(info.value)


def test_pickle_checkpoint_loads_when_allowed(tmp_path, tiny_pipe, tiny_folder, tiny_model):
    path = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": to_ldm_state_dict(tiny_pipe)}, str(path))
    model = load_model(str(path), device="cpu", allow_pickle=True, config=str(tiny_folder))
    assert model.model_hash == tiny_model.model_hash


def test_pickle_only_diffusers_folder(tmp_path, tiny_folder, tiny_model):
    from diffusers import UNet2DConditionModel

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_folder, folder)
    unet = UNet2DConditionModel.from_pretrained(str(folder / "unet"))
    shutil.rmtree(folder / "unet")
    unet.save_pretrained(str(folder / "unet"), safe_serialization=False)
    assert not list((folder / "unet").glob("*.safetensors"))
    with pytest.raises(ModelLoadError, match="pickle checkpoints can run code"):
        load_model(str(folder), device="cpu")
    assert load_model(str(folder), device="cpu", allow_pickle=True).model_hash == tiny_model.model_hash


# ---------------------------------------------------------------------------------------------
# diffusers folders
# ---------------------------------------------------------------------------------------------


def test_tiny_folder_loads_frozen_on_cpu(tiny_model, tiny_folder, tiny_pipe):
    m = tiny_model
    assert m.family == "sd1" and m.domain.judge is None
    assert m.device == torch.device("cpu") and m.dtype == torch.float32
    assert m.source == str(tiny_folder.resolve()) and m.extras["kind"] == "folder"
    assert len(m.model_hash) == 16 and int(m.model_hash, 16) >= 0
    assert m.model_hash == unet_hash(tiny_pipe.unet)
    for module in (m.unet, m.vae, m.text_encoder):
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())
        assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in module.parameters())
    assert m.pipe._progress_bar_config.get("disable") is True
    assert m.pipe.safety_checker is None
    assert m.tokenizer.model_max_length == 77


def test_hash_is_deterministic_and_independent_of_load_dtype(tiny_folder, tiny_model):
    again = load_model(str(tiny_folder), device="cpu", dtype="fp16")
    assert again.dtype == torch.float16 and next(again.unet.parameters()).dtype == torch.float16
    assert again.model_hash == tiny_model.model_hash


def test_hash_changes_with_any_weight(tiny_pipe):
    import copy

    before = state_dict_hash(tiny_pipe.unet)
    edited = copy.deepcopy(tiny_pipe.unet)
    with torch.no_grad():
        edited.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k.weight[0, 0] += 1e-3
    assert state_dict_hash(edited) != before
    assert state_dict_hash(tiny_pipe.unet) == before


def test_describe(tiny_model):
    info = describe(tiny_model)
    json.dumps(info)  # JSON-friendly for the UI
    assert info["family"] == "sd1" and info["device"] == "cpu" and info["dtype"] == "float32"
    assert info["model_hash"] == tiny_model.model_hash
    p = info["parameters"]
    assert p["total"] == p["unet"] + p["vae"] + p["text_encoder"] > 0
    assert p["unet"] == sum(x.numel() for x in tiny_model.unet.parameters())
    assert info["resolution"] == 64 and info["cross_attention_dim"] == 32 and info["token_length"] == 77
    assert info["judge"] is None and info["scheduler"] == "PNDMScheduler"


def test_nonexistent_path(tmp_path):
    for missing in (str(tmp_path / "nope"), "does/not/exist.safetensors", "missing-model"):
        with pytest.raises(ModelLoadError, match="no such file or folder") as info:
            load_model(missing, device="cpu")
        assert "a diffusers folder, a .safetensors file, or a hub id" in str(info.value)


def test_folder_without_model_index(tmp_path, tiny_folder):
    with pytest.raises(ModelLoadError, match="no model_index.json"):
        load_model(str(tmp_path), device="cpu")
    with pytest.raises(ModelLoadError, match=f"pass {tiny_folder}"):
        load_model(str(tiny_folder / "vae"), device="cpu")


def _set(path: str, key: str, value):
    def edit(configs):
        configs[path][key] = value
    return edit


@pytest.mark.parametrize(
    "edit, phrase",
    [
        (_set("model_index.json", "_class_name", "StableDiffusionXLPipeline"), "StableDiffusionXLPipeline"),
        (_set("model_index.json", "text_encoder", ["transformers", "T5EncoderModel"]), "text_encoder"),
        (_set("unet/config.json", "cross_attention_dim", 1024), "2.x"),
        (_set("text_encoder/config.json", "hidden_size", 1024), "2.x"),
        (_set("scheduler/scheduler_config.json", "prediction_type", "v_prediction"), "v-prediction"),
        (_set("unet/config.json", "in_channels", 9), "inpainting"),
        (_set("unet/config.json", "addition_embed_type", "text_time"), "SDXL"),
    ],
)
def test_non_sd1_folders_are_refused_before_loading_weights(tmp_path, tiny_folder, edit, phrase):
    folder = _config_only_folder(tmp_path, tiny_folder, edit)  # configs only: the check comes first
    with pytest.raises(ModelLoadError, match=phrase) as info:
        load_model(str(folder), device="cpu")
    assert "only SD1.x-architecture pipelines are supported" in str(info.value)


def test_folder_without_weights(tmp_path, tiny_folder):
    folder = _config_only_folder(tmp_path, tiny_folder, lambda configs: None)
    with pytest.raises(ModelLoadError, match="no weights found"):
        load_model(str(folder), device="cpu")


# ---------------------------------------------------------------------------------------------
# hub ids
# ---------------------------------------------------------------------------------------------


def test_hub_id_offline_says_the_hub_is_unreachable(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="hub is unreachable") as info:
        load_model("CompVis/stable-diffusion-v1-4", device="cpu")
    assert "local folder or file" in str(info.value)


def test_hub_id_network_failure(monkeypatch):
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    with pytest.raises(ModelLoadError, match="hub is unreachable.*local folder or file"):
        load_model("someone/some-sd1-model", device="cpu")


def test_hub_id_checks_configs_before_downloading_weights(monkeypatch, tmp_path, tiny_folder):
    import huggingface_hub
    from diffusers import StableDiffusionPipeline

    sd2 = _config_only_folder(tmp_path, tiny_folder, _set("unet/config.json", "cross_attention_dim", 1024))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: str(sd2))

    def must_not_download(*args, **kwargs):
        raise AssertionError("weights downloaded before the architecture check")

    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained", must_not_download)
    with pytest.raises(ModelLoadError, match="only SD1.x"):
        load_model("stabilityai/stable-diffusion-2-1", device="cpu")


def test_hub_id_loads_through_from_pretrained(monkeypatch, tiny_folder, tiny_model):
    import huggingface_hub
    from diffusers import StableDiffusionPipeline

    real = StableDiffusionPipeline.from_pretrained.__func__
    calls = []

    def fake_from_pretrained(cls, repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return real(cls, str(tiny_folder), local_files_only=True, safety_checker=None, requires_safety_checker=False)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: str(tiny_folder))
    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained", classmethod(fake_from_pretrained))
    model = load_model("someone/tiny-sd1", device="cpu")
    assert calls[0][0] == "someone/tiny-sd1" and calls[0][1]["use_safetensors"] is True
    assert model.source == "someone/tiny-sd1" and model.family == "sd1" and model.extras["kind"] == "hub"
    assert model.model_hash == tiny_model.model_hash


def test_hub_load_failure_that_is_not_the_network(monkeypatch, tiny_folder):
    import huggingface_hub
    from diffusers import StableDiffusionPipeline

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: str(tiny_folder))
    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained", broken)
    with pytest.raises(ModelLoadError, match="could not load the pipeline.*boom"):
        load_model("someone/tiny-sd1", device="cpu")


# ---------------------------------------------------------------------------------------------
# the demo model
# ---------------------------------------------------------------------------------------------


def test_micro_demo_folder_is_a_demo_model(micro_demo):
    from kscu.demo.classifier import ConceptClassifier

    assert micro_demo.family == "demo"
    classifier = micro_demo.domain.judge.classifier
    assert isinstance(classifier, ConceptClassifier) and not classifier.training
    assert micro_demo.dtype == torch.float32 and micro_demo.device == torch.device("cpu")
    assert describe(micro_demo)["judge"] == "demo classifier (exact)"
    assert not any(p.requires_grad for p in micro_demo.unet.parameters())


def test_a_copy_of_the_demo_model_is_still_demo_and_without_classifier_sd1(tmp_path, micro_demo_dir, micro_demo):
    copy = tmp_path / "elsewhere"
    shutil.copytree(micro_demo_dir, copy)
    model = load_model(str(copy), device="cpu")
    assert model.family == "demo" and model.domain.judge is not None
    assert model.model_hash == micro_demo.model_hash
    shutil.rmtree(copy / "classifier")
    plain = load_model(str(copy), device="cpu")
    assert plain.family == "sd1" and plain.domain.judge is None


def test_family_sd1_loads_the_demo_model_as_an_unknown_sd1_pipeline(micro_demo_dir, micro_demo):
    generic = load_model(str(micro_demo_dir), device="cpu", family="sd1")
    assert generic.family == "sd1" and generic.domain.judge is None, "no demo knowledge, no classifier"
    assert generic.model_hash == micro_demo.model_hash
    assert generic.domain.infer_kind("striped") is None and generic.domain.infer_kind("Van Gogh") == "style"
    with pytest.raises(ModelLoadError, match="unknown model family"):
        load_model(str(micro_demo_dir), device="cpu", family="sdxl")


def test_family_demo_needs_a_demo_folder(tiny_folder):
    with pytest.raises(ModelLoadError, match="not a demo model"):
        load_model(str(tiny_folder), device="cpu", family="demo")


def test_a_judge_that_does_not_load_is_a_clear_error(tmp_path, micro_demo_dir):
    with pytest.raises(ModelLoadError, match="could not load a CLIP model"):
        load_model(str(micro_demo_dir), device="cpu", family="sd1", judge=str(tmp_path))


def test_default_source_is_the_embedded_demo_model(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "DEMO_MODEL_DIR", tmp_path / "not-built")
    for source in (None, "demo"):
        with pytest.raises(ModelLoadError, match="demo model is not built yet"):
            load_model(source, device="cpu")
    assert DEMO_MODEL_DIR == models.ASSETS / "demo-model"


# ---------------------------------------------------------------------------------------------
# device and dtype
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine's message")
def test_cuda_without_a_gpu_is_a_clear_error(tiny_folder):
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        load_model(str(tiny_folder), device="cuda")


def test_bad_dtype(tiny_folder):
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        load_model(str(tiny_folder), device="cpu", dtype="float13")


def test_default_dtype_rules():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert models._resolve_dtype(None, cpu, tiny=False) == torch.float32
    assert models._resolve_dtype(None, cuda, tiny=False) == torch.float16
    assert models._resolve_dtype(None, cuda, tiny=True) == torch.float32
    assert models._resolve_dtype("bf16", cpu, tiny=False) == torch.bfloat16

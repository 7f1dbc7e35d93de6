"""Stable Diffusion 1.x architecture without weights: configs, random-init pipelines, and the
single-file (original LDM / CompVis) key layout.

- `sd1_component_configs("full")` are the published SD1.4/1.5 configs shipped in
  assets/sd1-config; `"tiny"` is the same architecture (same block types and layout: three
  cross-attention down blocks then a plain one, 2 layers per block, 8x VAE downsampling, CLIP text
  encoder with the real 49,408-token vocabulary and 77-token context) with tiny widths, for tests.
- `random_sd1_pipeline(scale, seed)` builds a random-init StableDiffusionPipeline from them
  ("full" takes a few seconds and ~4.3 GB of RAM in float32: benchmarks; "tiny" ~2 M params: tests).
- `to_ldm_state_dict(pipe)` / `save_single_file(pipe, path)` write a pipeline in the single-file
  layout that A1111, ComfyUI and `StableDiffusionPipeline.from_single_file` read
  (`model.diffusion_model.*`, `first_stage_model.*`, `cond_stage_model.transformer.*`). It is the
  inverse of diffusers' own LDM->diffusers conversion (checked by a round trip in the tests), so
  it also lets the tests exercise single-file loading without a real checkpoint.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from kscu.models import SD1_CONFIG_DIR  # assets/sd1-config: configs + real CLIP BPE tokenizer, no weights

__all__ = [
    "SD1_CONFIG_DIR", "SCALES", "sd1_component_configs", "random_sd1_pipeline",
    "unet_to_ldm", "vae_to_ldm", "text_encoder_to_ldm", "to_ldm_state_dict", "save_single_file",
]

SCALES = ("tiny", "full")

# Tiny overrides: everything not listed keeps the real SD1 value (block types, layers per block,
# activation, schedule, vocabulary, context length ...).
_TINY_UNET = dict(
    block_out_channels=[16, 32, 32, 32],
    norm_num_groups=8,
    attention_head_dim=2,  # SD1 calls the number of heads "attention_head_dim" (8 there)
    cross_attention_dim=32,
    sample_size=8,
)
_TINY_VAE = dict(block_out_channels=[8, 16, 16, 16], norm_num_groups=8, sample_size=64)
_TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, projection_dim=32)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def sd1_component_configs(scale: str = "full") -> dict[str, dict]:
    """Config dicts of the SD1 components: keys "unet", "vae", "text_encoder", "scheduler"."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, not {scale!r}")
    configs = {
        "unet": _read_json(SD1_CONFIG_DIR / "unet" / "config.json"),
        "vae": _read_json(SD1_CONFIG_DIR / "vae" / "config.json"),
        "text_encoder": _read_json(SD1_CONFIG_DIR / "text_encoder" / "config.json"),
        "scheduler": _read_json(SD1_CONFIG_DIR / "scheduler" / "scheduler_config.json"),
    }
    if scale == "tiny":
        configs = copy.deepcopy(configs)
        configs["unet"].update(_TINY_UNET)
        configs["vae"].update(_TINY_VAE)
        configs["text_encoder"].update(_TINY_TEXT)
    return configs


def random_sd1_pipeline(scale: str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32) -> StableDiffusionPipeline:
    """A random-init SD1.x-architecture StableDiffusionPipeline (CPU, deterministic for a seed).

    The tokenizer is the real CLIP BPE tokenizer (model_max_length 77); scheduler: SD's PNDM.
    No safety checker. Saves with `save_pretrained` and reloads offline like any SD1 folder.
    """
    configs = sd1_component_configs(scale)
    text_config = {k: v for k, v in configs["text_encoder"].items() if k not in ("architectures", "torch_dtype")}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel.from_config(configs["unet"])
        torch.manual_seed(seed + 1)
        vae = AutoencoderKL.from_config(configs["vae"])
        torch.manual_seed(seed + 2)
        text_encoder = CLIPTextModel(CLIPTextConfig(**text_config))
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(str(SD1_CONFIG_DIR / "tokenizer")),
        unet=unet,
        scheduler=PNDMScheduler.from_config(configs["scheduler"]),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if dtype != torch.float32:
        pipe.to(dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.eval()
    return pipe


# ---------------------------------------------------------------------------------------------
# diffusers -> original single-file (LDM) layout
# ---------------------------------------------------------------------------------------------

LDM_UNET_PREFIX = "model.diffusion_model."
LDM_VAE_PREFIX = "first_stage_model."
LDM_TEXT_PREFIX = "cond_stage_model.transformer."

_UNET_TOP = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}
_UNET_RESNET = {
    "norm1.": "in_layers.0.",
    "conv1.": "in_layers.2.",
    "norm2.": "out_layers.0.",
    "conv2.": "out_layers.3.",
    "time_emb_proj.": "emb_layers.1.",
    "conv_shortcut.": "skip_connection.",
}
_VAE_TOP = {
    "conv_in.": "conv_in.",
    "conv_out.": "conv_out.",
    "conv_norm_out.": "norm_out.",
}
_VAE_ATTENTION = {
    "group_norm.": "norm.",
    "to_q.": "q.",
    "to_k.": "k.",
    "to_v.": "v.",
    "to_out.0.": "proj_out.",
}


def _rename(key: str, prefixes: dict[str, str], inner: dict[str, str] | None = None) -> str | None:
    """Replace the first matching prefix of `key` (and then the prefix of the remainder via `inner`)."""
    for old, new in prefixes.items():
        if key.startswith(old):
            rest = key[len(old) :]
            if inner:
                for inner_old, inner_new in inner.items():
                    if rest.startswith(inner_old):
                        rest = inner_new + rest[len(inner_old) :]
                        break
            return new + rest
    return None


def _unet_prefix_maps(config) -> tuple[dict[str, str], dict[str, str]]:
    """(resnet prefixes, other prefixes) diffusers -> LDM for a UNet2DConditionModel config."""
    layers = config["layers_per_block"]
    n_blocks = len(config["block_out_channels"])
    up_types = config["up_block_types"]
    resnets: dict[str, str] = {}
    others: dict[str, str] = {}
    for i in range(n_blocks):
        for j in range(layers):
            index = (layers + 1) * i + j + 1
            resnets[f"down_blocks.{i}.resnets.{j}."] = f"input_blocks.{index}.0."
            others[f"down_blocks.{i}.attentions.{j}."] = f"input_blocks.{index}.1."
        if i < n_blocks - 1:
            others[f"down_blocks.{i}.downsamplers.0.conv."] = f"input_blocks.{(layers + 1) * (i + 1)}.0.op."
        for j in range(layers + 1):
            index = (layers + 1) * i + j
            resnets[f"up_blocks.{i}.resnets.{j}."] = f"output_blocks.{index}.0."
            others[f"up_blocks.{i}.attentions.{j}."] = f"output_blocks.{index}.1."
        if i < n_blocks - 1:
            slot = 2 if "CrossAttn" in up_types[i] else 1
            others[f"up_blocks.{i}.upsamplers.0.conv."] = f"output_blocks.{(layers + 1) * i + layers}.{slot}.conv."
    resnets["mid_block.resnets.0."] = "middle_block.0."
    resnets["mid_block.resnets.1."] = "middle_block.2."
    others["mid_block.attentions.0."] = "middle_block.1."
    others.update(_UNET_TOP)
    return resnets, others


def unet_to_ldm(state_dict: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """UNet2DConditionModel state dict -> LDM keys (without the `model.diffusion_model.` prefix)."""
    resnets, others = _unet_prefix_maps(config)
    out = {}
    for key, value in state_dict.items():
        new = _rename(key, resnets, _UNET_RESNET) or _rename(key, others)
        if new is None:
            raise ValueError(f"no LDM name for UNet key {key!r} (not an SD1-layout UNet?)")
        out[new] = value
    return out


def _vae_prefix_maps(config) -> tuple[dict[str, str], dict[str, str]]:
    n_blocks = len(config["block_out_channels"])
    layers = config["layers_per_block"]
    resnets: dict[str, str] = {}
    others: dict[str, str] = {}
    for i in range(n_blocks):
        for j in range(layers):
            resnets[f"encoder.down_blocks.{i}.resnets.{j}."] = f"encoder.down.{i}.block.{j}."
        if i < n_blocks - 1:
            others[f"encoder.down_blocks.{i}.downsamplers.0.conv."] = f"encoder.down.{i}.downsample.conv."
        ldm_i = n_blocks - 1 - i
        for j in range(layers + 1):
            resnets[f"decoder.up_blocks.{i}.resnets.{j}."] = f"decoder.up.{ldm_i}.block.{j}."
        if i < n_blocks - 1:
            others[f"decoder.up_blocks.{i}.upsamplers.0.conv."] = f"decoder.up.{ldm_i}.upsample.conv."
    for part in ("encoder", "decoder"):
        for k in range(2):
            resnets[f"{part}.mid_block.resnets.{k}."] = f"{part}.mid.block_{k + 1}."
        for old, new in _VAE_TOP.items():
            others[f"{part}.{old}"] = f"{part}.{new}"
    others["quant_conv."] = "quant_conv."
    others["post_quant_conv."] = "post_quant_conv."
    return resnets, others


def vae_to_ldm(state_dict: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """AutoencoderKL state dict -> LDM keys (without `first_stage_model.`); attention linears
    become the 1x1 convolutions of the original."""
    resnets, others = _vae_prefix_maps(config)
    attentions = {f"{part}.mid_block.attentions.0.": f"{part}.mid.attn_1." for part in ("encoder", "decoder")}
    out = {}
    for key, value in state_dict.items():
        new = _rename(key, attentions, _VAE_ATTENTION)
        if new is not None:
            if value.ndim == 2:
                value = value[:, :, None, None]
        else:
            new = _rename(key, resnets, {"conv_shortcut.": "nin_shortcut."}) or _rename(key, others)
        if new is None:
            raise ValueError(f"no LDM name for VAE key {key!r} (not an SD1-layout AutoencoderKL?)")
        out[new] = value
    return out


def text_encoder_to_ldm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIPTextModel state dict -> `text_model.*` keys (without `cond_stage_model.transformer.`).

    transformers >= 5.6 flattened CLIPTextModel (no `text_model.` wrapper); SD checkpoints keep it.
    """
    return {(key if key.startswith("text_model.") else "text_model." + key): value for key, value in state_dict.items()}


def to_ldm_state_dict(pipe: StableDiffusionPipeline, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The pipeline's UNet, VAE and text encoder in the original single-file SD1 key layout.

    Tensors are detached CPU copies (in `dtype` when given), contiguous, ready for safetensors.
    """
    parts = [
        (LDM_UNET_PREFIX, unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config)),
        (LDM_VAE_PREFIX, vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config)),
        (LDM_TEXT_PREFIX, text_encoder_to_ldm(pipe.text_encoder.state_dict())),
    ]
    out: dict[str, torch.Tensor] = {}
    for prefix, state in parts:
        for key, value in state.items():
            value = value.detach().to("cpu")
            if dtype is not None and value.is_floating_point():
                value = value.to(dtype)
            out[prefix + key] = value.contiguous()
    return out


def save_single_file(pipe: StableDiffusionPipeline, path: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Save `pipe` as one SD1 `.safetensors` checkpoint (LDM layout; float16 halves the size).

    Loads back with `kscu.models.load_model(path)` (SD1-size models) or
    `StableDiffusionPipeline.from_single_file(path, config=<diffusers folder of the same sizes>)`.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"single-file checkpoints are written as .safetensors, not {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(to_ldm_state_dict(pipe, dtype=dtype), str(path), metadata={"format": "pt"})
    return path

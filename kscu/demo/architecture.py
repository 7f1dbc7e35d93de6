"""Configs of the tiny Stable-Diffusion-architecture demo model.

Same classes as SD1.x (AutoencoderKL, UNet2DConditionModel with cross-attention, CLIPTextModel,
CLIP BPE tokenizer, DDIM), only smaller: attention lives at 8x8 and 4x4 latents only, because
attention at high resolution is what costs on a CPU. Tests build random-init models from the
same functions with `micro=True`.
"""
from __future__ import annotations

from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

TOKEN_LENGTH = 20
"""Prompt length in tokens (SD uses 77; our prompts are short and attention cost scales with it)."""

SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
"""SD1.x's noise schedule, so step indices and timesteps mean the same as on the real model."""


def make_vae(micro: bool = False) -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 16, 16) if micro else (32, 64, 64),
        layers_per_block=1,
        latent_channels=4,
        # 8 groups, not SD's 32: with 32 channels, 32 groups is instance norm, which strips each
        # channel's mean and left reconstructions grey (colour read right on 65% of them).
        norm_num_groups=8,
        sample_size=64,
    )


def make_unet(micro: bool = False) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(8, 16, 16) if micro else (32, 64, 64),
        layers_per_block=1 if micro else 2,
        cross_attention_dim=32 if micro else 128,
        attention_head_dim=2 if micro else 4,
        norm_num_groups=8 if micro else 32,
    )


def make_text_encoder(micro: bool = False) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=32 if micro else 128,
        intermediate_size=64 if micro else 512,
        num_hidden_layers=1 if micro else 2,
        num_attention_heads=2 if micro else 4,
        max_position_embeddings=TOKEN_LENGTH,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    return CLIPTextModel(config)


def make_train_scheduler() -> DDPMScheduler:
    return DDPMScheduler(**SCHEDULE)


def make_sample_scheduler() -> DDIMScheduler:
    return DDIMScheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1)

"""Judge-free retention: how much an edit changed each image that should not have changed.

Why: a model without a judge still has an answer to "what did the edit cost?". On the same prompt
and seed the unedited and the edited model start from the same noise, so for a prompt the edit
should leave alone the two images should match; their similarity per image (SSIM and PSNR,
torchmetrics' implementations) measures the collateral change with no judge at all. LPIPS is
added when its weights are on this machine (torchmetrics' LPIPS needs torchvision and downloaded
weights, which this project does not install, so it is measured only where both are present).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

IDENTICAL_PSNR = 100.0
"""PSNR reported for identical images (the true value is infinite)."""


@dataclass(frozen=True)
class ImageChange:
    """Mean similarity of image pairs (before vs after, same prompt and seed) and the per-prompt means."""

    ssim: float
    psnr: float
    ssim_by_prompt: dict[str, float]
    psnr_by_prompt: dict[str, float]
    images: int
    lpips: float | None = None

    @property
    def concept_ssim(self) -> float:
        """SSIM of the first prompt (in a comparison grid: the erased concept, which should change)."""
        return next(iter(self.ssim_by_prompt.values()))

    @property
    def neighbour_ssim(self) -> float | None:
        """Mean SSIM of every later prompt (in a grid: the neighbours, which should not), None if none."""
        rest = list(self.ssim_by_prompt.values())[1:]
        return float(np.mean(rest)) if rest else None

    def to_dict(self) -> dict:
        return {**asdict(self), "concept_ssim": self.concept_ssim, "neighbour_ssim": self.neighbour_ssim}


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(255.0)


def per_image_similarity(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SSIM and PSNR (dB) of each pair of uint8 images (N, H, W, 3)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    if before.shape != after.shape or before.ndim != 4:
        raise ValueError(f"before and after must be image stacks of one shape (N, H, W, 3); got {before.shape} and {after.shape}")
    x, y = _to_tensor(before), _to_tensor(after)
    ssim = structural_similarity_index_measure(y, x, data_range=1.0, reduction="none")
    psnr = peak_signal_noise_ratio(y, x, data_range=1.0, reduction="none", dim=(1, 2, 3))
    psnr = torch.where(torch.isfinite(psnr), psnr, torch.full_like(psnr, IDENTICAL_PSNR)).clamp_max(IDENTICAL_PSNR)
    return ssim.numpy(), psnr.numpy()


def image_change(before: np.ndarray, after: np.ndarray, prompts: list[str]) -> ImageChange:
    """Similarity of before/after pairs; `prompts` names each pair's prompt (for the per-prompt means)."""
    if len(prompts) != len(before):
        raise ValueError(f"{len(before)} image pairs but {len(prompts)} prompts")
    ssim, psnr = per_image_similarity(before, after)
    names = list(dict.fromkeys(prompts))
    by = np.array(prompts, dtype=object)
    return ImageChange(
        float(ssim.mean()), float(psnr.mean()),
        {p: float(ssim[by == p].mean()) for p in names}, {p: float(psnr[by == p].mean()) for p in names},
        len(prompts), _lpips(before, after),
    )


def _lpips(before: np.ndarray, after: np.ndarray) -> float | None:
    """Mean LPIPS when torchmetrics can build it here (torchvision and cached weights), else None."""
    try:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        metric = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True)
    except Exception:  # ModuleNotFoundError (torchvision), no weights offline: LPIPS is optional
        return None
    with torch.no_grad():
        return float(metric(_to_tensor(after), _to_tensor(before)))


def grid_change(grids: dict) -> ImageChange:
    """ImageChange of kscu.grids.comparison_grids' before/after images (rows: its prompts)."""
    if grids.get("after_images") is None:
        raise ValueError("the grids have no edited side: draw them with an edited UNet")
    prompts = [p for p in grids["prompts"] for _ in grids["seeds"]]
    return image_change(grids["before_images"], grids["after_images"], prompts)

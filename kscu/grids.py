"""Before/after image grids: the erased concept and its neighbours, same seeds with the base UNet
and the edited one, one row per prompt and one column per seed.

Why grids: real SD1.x checkpoints have no exact judge, so the user's eyes are the metric; and even
on the demo model a grid shows *how* a concept went (plain shapes, or stripes turned into checks)
where UA only says that it went. Neighbours are the concepts that must survive (for the demo: the
other values of the erased attribute; on SD1.x the user's or the domain's), so damage to them is
visible next to the erasure.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from kscu.models import LoadedModel
from kscu.sampling import Sampler

MIN_CELL = 128
"""Grid cells are upscaled (NEAREST, integer factor) to at least this many pixels, large enough to judge."""
_GAP = 2
_PAD = 3


def grid_prompts(model: LoadedModel, concept: str, neighbours: list[str] | None = None, kind: str | None = None) -> list[str]:
    """Row prompts: the concept first, then the neighbours, phrased by the model's domain (default
    neighbours: the domain's for the concept)."""
    return model.domain.grid_prompts(concept, kind, neighbours)


def comparison_grids(
    model: LoadedModel,
    edited_unet,
    concept: str,
    neighbours: list[str] | None = None,
    seeds: tuple[int, ...] | list[int] = (0, 1, 2, 3),
    num_steps: int = 25,
    guidance: float = 3.0,
    base: dict | None = None,
    kind: str | None = None,
) -> dict:
    """Before/after grids (rows = prompts, columns = seeds) and the raw images.

    Returns {"prompts", "seeds", "settings", "before", "after", "before_images", "after_images"}:
    the grids are PIL images, the raw arrays uint8 (rows * cols, H, W, 3) in row-major order. With
    edited_unet None only the base is drawn and the "after" entries are None. base: such a result
    drawn earlier with the same settings, whose "before" side is reused instead of sampled again.
    """
    prompts = grid_prompts(model, concept, neighbours, kind)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("give at least one seed")
    settings = (tuple(prompts), tuple(seeds), num_steps, guidance)
    if base is not None and base.get("settings") != settings:
        raise ValueError("the base grids were drawn with other prompts or settings; draw them again without base")
    pairs_prompts = [p for p in prompts for _ in seeds]
    pairs_seeds = seeds * len(prompts)
    sampler = Sampler(model, num_steps, guidance)
    result: dict = {"prompts": prompts, "seeds": seeds, "settings": settings}

    def draw(unet) -> tuple[Image.Image | None, np.ndarray | None]:
        if unet is None:
            return None, None
        images = sampler.generate(unet, pairs_prompts, pairs_seeds)
        scale = max(1, math.ceil(MIN_CELL / images.shape[2]))
        return image_grid(images, len(prompts), len(seeds), labels=prompts, scale=scale), images

    result["before"], result["before_images"] = (base["before"], base["before_images"]) if base is not None else draw(model.unet)
    result["after"], result["after_images"] = draw(edited_unet)
    return result


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """Greedy word wrap to `width` pixels (a word longer than the width gets a line of its own)."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def image_grid(images: np.ndarray, rows: int, cols: int, labels: list[str] | None = None, scale: int = 2) -> Image.Image:
    """Tile uint8 (rows * cols, H, W, 3) images row-major, each upscaled `scale` times with NEAREST
    (no smoothing: what the model drew, pixel for pixel), with an optional label above each row."""
    if images.ndim != 4 or len(images) != rows * cols:
        raise ValueError(f"expected {rows} x {cols} = {rows * cols} images (N, H, W, 3), got shape {images.shape}")
    if labels is not None and len(labels) != rows:
        raise ValueError(f"expected one label per row ({rows}), got {len(labels)}")
    if scale < 1:
        raise ValueError("scale must be a positive integer")
    cell_h, cell_w = images.shape[1] * scale, images.shape[2] * scale
    width = cols * cell_w + (cols - 1) * _GAP
    # Pillow's bundled FreeType font at a size that grows with the cells: the bitmap default (10 px)
    # was hard to read under 256-px cells.
    font = ImageFont.load_default(size=max(12, min(20, cell_w // 9)))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = measure.textbbox((0, 0), "Ag", font=font)[3] + 2
    wrapped = [_wrap(measure, label, font, width - 2 * _PAD) for label in labels] if labels is not None else [[] for _ in range(rows)]
    bands = [len(lines) * line_h + 2 * _PAD if lines else 0 for lines in wrapped]
    height = sum(bands) + rows * cell_h + (rows - 1) * _GAP
    grid = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    y = 0
    for r in range(rows):
        for i, line in enumerate(wrapped[r]):
            draw.text((_PAD, y + _PAD + i * line_h), line, fill=(0, 0, 0), font=font)
        y += bands[r]
        for c in range(cols):
            cell = Image.fromarray(images[r * cols + c]).resize((cell_w, cell_h), Image.Resampling.NEAREST)
            grid.paste(cell, (c * (cell_w + _GAP), y))
        y += cell_h + _GAP
    return grid


def comparison_panels(grids: list[dict]) -> list[Image.Image]:
    """The grids of comparison_grids results drawn on the same seeds: the before grid once, then each after grid."""
    return [grids[0]["before"]] + [g["after"] for g in grids if g["after"] is not None]


def side_by_side(panels: list[Image.Image], gap: int = 16) -> Image.Image:
    """Grids next to each other on white, top-aligned (before, then each after)."""
    canvas = Image.new("RGB", (sum(p.width for p in panels) + gap * (len(panels) - 1), max(p.height for p in panels)), "white")
    x = 0
    for panel in panels:
        canvas.paste(panel, (x, 0))
        x += panel.width + gap
    return canvas


def blur(images: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian-blurred copies of uint8 NHWC images (the UI shows nudity-kind outputs blurred by default)."""
    if radius <= 0:
        return images.copy()
    return np.stack([np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(radius))) for im in images])

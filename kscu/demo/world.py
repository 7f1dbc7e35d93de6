"""Shape world: one object per 64x64 image with four independent attributes.

Why procedural: every image comes with exact ground-truth concepts, so unlearning can be
scored exactly (UA / IRA / CRA) without any downloaded classifier or dataset. Each attribute
is a concept kind the workbench can erase: style (texture), object (shape), colour, background.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
_SUPERSAMPLE = 4

SHAPES = ("circle", "square", "triangle", "star")
COLOURS = ("red", "green", "blue", "yellow", "purple")
STYLES = ("plain", "striped", "dotted", "checkered", "outlined")
BACKGROUNDS = ("dark", "light", "grey")

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": COLOURS,
    "style": STYLES,
    "background": BACKGROUNDS,
}
"""Attribute name -> its values, in classifier-head order."""

PATTERNED = ("striped", "dotted", "checkered")
"""Styles drawn as a dark pattern inside the shape. They look alike to the model: erasing one with
the plain KSCU loss faded the others too (README, "Erase 'striped' end to end"), so the demo
style preset keeps them with the preservation term (kscu.demo.world.lookalikes)."""

KIND_OF_ATTRIBUTE = {"shape": "object", "colour": "colour", "style": "style", "background": "background"}
"""The method's concept kind for each attribute (styles are textures, objects are shapes)."""

_RGB = {
    "red": (214, 40, 40),
    "green": (40, 170, 70),
    "blue": (40, 90, 225),
    "yellow": (240, 205, 30),
    "purple": (145, 55, 190),
}
_BACKGROUND_RGB = {"dark": (22, 24, 34), "light": (236, 236, 226), "grey": (128, 128, 128)}


@dataclass(frozen=True)
class Scene:
    """The ground truth of one image."""

    shape: str
    colour: str
    style: str
    background: str

    def value(self, attribute: str) -> str:
        return getattr(self, attribute)

    def labels(self) -> tuple[int, int, int, int]:
        return tuple(ATTRIBUTES[a].index(self.value(a)) for a in ATTRIBUTES)  # type: ignore[return-value]


def attribute_of(concept: str) -> str | None:
    """Which attribute a concept word belongs to (e.g. 'striped' -> 'style'), or None."""
    for attribute, values in ATTRIBUTES.items():
        if concept in values:
            return attribute
    return None


MIXES = {"purple": ("red", "blue"), "green": ("blue", "yellow")}
"""The shape world's mixed colours and the colours a painter mixes them from. Erasing "red" cost
the colour preset's edits purple most of its images, and once purple was kept, blue."""


def lookalikes(concept: str) -> tuple[str, ...]:
    """The values that an edit of `concept` is most likely to drag along: the other patterned
    styles for a patterned style; for a colour, the colours mixed from it or into it and those
    mixes' other parts (red: purple, blue); nothing for any other concept."""
    concept = concept.strip().lower()
    if concept in PATTERNED:
        return tuple(v for v in PATTERNED if v != concept)
    related = [c for mix, parts in MIXES.items() if concept == mix or concept in parts for c in (mix, *parts)]
    return tuple(c for c in dict.fromkeys(related) if c != concept)


SUBSTITUTES: dict[str, tuple[str, ...]] = {"style": ("plain",), "shape": ("square", "circle"), "colour": ("yellow", "red"),
                                           "background": ("grey", "light")}
"""What an erased value becomes, in order of preference: the first that is not the concept itself,
nor one of its look-alikes (kept by the preset: mapping onto one would drag it along), nor another
concept the job erases."""


def substitute(concept: str, avoid: Iterable[str] = ()) -> str | None:
    """What an erased value becomes by default: the same scene drawn plain ("a red striped star" ->
    "a red plain star"), with a square in place of the shape (a circle in place of a square), in
    yellow in place of the colour (red in place of yellow; blue, whose every other colour is a
    look-alike, has none), on grey in place of the background (light in place of grey). Why: the
    sentence without the word is a wider target, whose output the unedited model draws with any
    value, the erased one included: mapped to it, stars stayed on 16-17 % of the images on two
    training seeds of three, mapped to a square on 1-2 % on all three (docs/results.md, "Object
    preset"); dark stayed on 16 / 1 / 11 % and the styles lost 7.5 / 15.8 / 8.3 points, mapped to
    grey on 10 / 1 / 2 % and 2.5 / 6.7 / 4.2 ("Background preset"); red's shapes lost their style on
    8-17 % of the images, mapped to yellow (with the pool) lost at most 3.3 points of anything
    ("Colour preset, mapped to yellow"). None for plain and when every substitute is excluded."""
    concept = concept.strip().lower()
    excluded = {concept, *lookalikes(concept), *(a.strip().lower() for a in avoid)}
    return next((s for s in SUBSTITUTES.get(attribute_of(concept) or "", ()) if s not in excluded), None)


def random_scene(rng: random.Random) -> Scene:
    return Scene(*(rng.choice(values) for values in ATTRIBUTES.values()))


def _shape_points(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        corners = [angle + math.pi / 4 + k * math.pi / 2 for k in range(4)]
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in corners]
    if shape == "triangle":
        corners = [angle - math.pi / 2 + k * 2 * math.pi / 3 for k in range(3)]
        return [(cx + r * math.cos(a), cy + r * 1.05 * math.sin(a) + 0.15 * r) for a in corners]
    if shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.45
            a = angle - math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
        return points
    raise ValueError(shape)


def _texture(style: str, rgb: tuple[int, int, int], size: int, rng: random.Random) -> Image.Image:
    """A full-canvas texture in the object's colour; the shape mask cuts it out."""
    dark = tuple(int(c * 0.3) for c in rgb)
    tex = Image.new("RGB", (size, size), rgb)
    draw = ImageDraw.Draw(tex)
    period = 8 * _SUPERSAMPLE
    phase = rng.randrange(period)
    if style == "striped":
        vertical = rng.random() < 0.5
        for p in range(-period + phase, size + period, period):
            box = (p, 0, p + period // 2 - 1, size) if vertical else (0, p, size, p + period // 2 - 1)
            draw.rectangle(box, fill=dark)
    elif style == "dotted":
        # Dots on a 1.5x coarser lattice than the stripes: a 50% square wave of period 8 has only
        # odd harmonics (1/8, 3/8, ...) and a period-12 lattice only multiples of 1/12, so the two
        # textures share no spatial frequency. With both at period 8 they shared 1/8 along the
        # stripes' axis, and erasing "striped" faded the dots too (dotted read right on 73% of
        # images before such an edit and 23% after, on the model trained on that world).
        dot_period = period * 3 // 2
        rad, offset = dot_period // 4, phase * 3 // 2
        for y in range(offset - dot_period, size + dot_period, dot_period):
            for x in range(offset - dot_period, size + dot_period, dot_period):
                draw.ellipse((x - rad, y - rad, x + rad, y + rad), fill=dark)
    elif style == "checkered":
        cell = period // 2
        for y in range(0, size, cell):
            for x in range(0, size, cell):
                if ((x + phase) // cell + y // cell) % 2 == 0:
                    draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=dark)
    return tex


def render(scene: Scene, rng: random.Random) -> Image.Image:
    """Draw one scene (4x supersampled, then downsampled) with random placement and pose."""
    size = IMAGE_SIZE * _SUPERSAMPLE
    jitter = [rng.uniform(-1.0, 1.0) for _ in range(3)]
    cx = size / 2 + jitter[0] * 6 * _SUPERSAMPLE
    cy = size / 2 + jitter[1] * 6 * _SUPERSAMPLE
    r = (17 + jitter[2] * 3) * _SUPERSAMPLE
    angle = rng.uniform(-0.35, 0.35)
    image = Image.new("RGB", (size, size), _BACKGROUND_RGB[scene.background])
    mask = Image.new("L", (size, size), 0)
    mdraw = ImageDraw.Draw(mask)
    rgb = _RGB[scene.colour]
    outline_width = int(3.5 * _SUPERSAMPLE)
    if scene.shape == "circle":
        box = (cx - r, cy - r, cx + r, cy + r)
        if scene.style == "outlined":
            mdraw.ellipse(box, outline=255, width=outline_width)
        else:
            mdraw.ellipse(box, fill=255)
    else:
        points = _shape_points(scene.shape, cx, cy, r * {"star": 1.15, "triangle": 1.2}.get(scene.shape, 1.0), angle)
        if scene.style == "outlined":
            mdraw.line(points + points[:1], fill=255, width=outline_width, joint="curve")
        else:
            mdraw.polygon(points, fill=255)
    texture = Image.new("RGB", (size, size), rgb) if scene.style in ("plain", "outlined") else _texture(scene.style, rgb, size, rng)
    image.paste(texture, (0, 0), mask)
    return image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)


def generate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[Scene]]:
    """n images (uint8 N,H,W,3), their labels (int64 N,4) and scenes; deterministic from seed."""
    rng = random.Random(seed)
    scenes = [random_scene(rng) for _ in range(n)]
    images = np.stack([np.asarray(render(s, rng)) for s in scenes])
    labels = np.array([s.labels() for s in scenes], dtype=np.int64)
    return images, labels, scenes

"""Natural-language prompts for shape-world scenes.

Training sees TRAIN_TEMPLATES only; HELD_OUT_TEMPLATES are kept for evaluation, so that an
erased concept is scored on sentences the model (and the unlearning) never saw. A template is
a list of segments; a segment naming a dropped attribute disappears, which is how the model
learns to fill unspecified attributes at random (and how "a striped shape" makes sense).
"""
from __future__ import annotations

import random
import re

from kscu.demo.world import Scene

Template = tuple[str, ...]

TRAIN_TEMPLATES: tuple[Template, ...] = (
    ("a {style}", "{colour}", "{shape}", "on a {background} background"),
    ("{colour}", "{shape},", "{style},", "{background} background"),
    ("a {shape}", "that is {colour}", "and {style}", "on {background}"),
)
HELD_OUT_TEMPLATES: tuple[Template, ...] = (
    ("an image of a {style}", "{colour}", "{shape}", "against a {background} backdrop"),
    ("{background} background,", "{style}", "{shape}", "in {colour}"),
)


def _fields(segment: str) -> list[str]:
    return [name for name in ("shape", "colour", "style", "background") if "{" + name + "}" in segment]


def compose(template: Template, values: dict[str, str | None]) -> str:
    """Fill a template; segments whose attribute is None are dropped ('shape' falls back to 'shape')."""
    words = []
    for segment in template:
        fields = _fields(segment)
        if fields == ["shape"] and values.get("shape") is None:
            words.append(segment.format(shape="shape"))
        elif all(values.get(f) is not None for f in fields):
            words.append(segment.format(**{f: values[f] for f in fields}))
    text = " ".join(words).strip(" ,").replace(" ,", ",")
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def prompt_for(scene: Scene, template: Template, drop: frozenset[str] = frozenset()) -> str:
    values = {a: (None if a in drop else scene.value(a)) for a in ("shape", "colour", "style", "background")}
    return compose(template, values)


def training_prompt(scene: Scene, rng: random.Random, drop_p: float = 0.1, empty_p: float = 0.1) -> str:
    """A random training caption: random template, each attribute dropped with drop_p, or empty."""
    if rng.random() < empty_p:
        return ""
    drop = frozenset(a for a in ("shape", "colour", "style", "background") if rng.random() < drop_p)
    return prompt_for(scene, rng.choice(TRAIN_TEMPLATES), drop)

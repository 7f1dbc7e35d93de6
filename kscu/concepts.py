"""How a concept is phrased for training: (concept prompt, anchor prompt) pairs, and the
prompt augmentation used in the last iterations.

Why pairs: negative guidance pushes the model away from *every* word of the prompt. On the
tiny demo model a bare word ("striped") erased weakly, whole sentences erased strongly but took
colour and shape with them, and sentences whose anchor is the same sentence without the concept
word erased the concept and kept the rest (measured on this project's first demo model). On SD1.x the paper's setting
is the concept text itself with the empty prompt as anchor, or a user-chosen anchor concept.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from kscu.demo.prompts import TRAIN_TEMPLATES, prompt_for
from kscu.demo.world import ATTRIBUTES, Scene, attribute_of


@dataclass(frozen=True)
class ConceptPair:
    prompt: str
    anchor: str


def concept_pairs(concept: str, family: str, anchor: str | None = None, count: int = 64, seed: int = 0) -> list[ConceptPair]:
    """Training phrasings of `concept`; `anchor` (optional) is the substitute concept."""
    concept = concept.strip()
    if not concept:
        raise ValueError("the concept is empty: type the word or phrase to erase, e.g. 'striped'")
    attribute = attribute_of(concept.lower()) if family == "demo" else None
    if attribute is None:
        return [ConceptPair(concept, anchor or "")]
    if anchor is not None and anchor and anchor not in ATTRIBUTES[attribute]:
        raise ValueError(f"anchor {anchor!r} is not a {attribute} of the demo world; choose one of {', '.join(ATTRIBUTES[attribute])}")
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        values = {a: rng.choice(v) for a, v in ATTRIBUTES.items()}
        values[attribute] = concept.lower()
        scene = Scene(**values)
        template = rng.choice(TRAIN_TEMPLATES)
        if anchor:
            substitute = Scene(**{**values, attribute: anchor})
            anchor_text = prompt_for(substitute, template)
        else:
            anchor_text = prompt_for(scene, template, drop=frozenset({attribute}))
        pairs.append(ConceptPair(prompt_for(scene, template), anchor_text))
    return pairs


def preserve_prompts(preserve: tuple[str, ...], family: str, count: int = 64, seed: int = 0) -> list[str]:
    """Prompts whose output the edit must leave as it was (the optional preservation term).

    A demo-world value ("dotted") becomes sentences in the training phrasing, so the model is held
    to what it drew for them; any other text (an SD1.x concept such as "Monet") is used as given.
    """
    prompts: list[str] = []
    for i, text in enumerate(t.strip() for t in preserve):
        if family == "demo" and attribute_of(text.lower()) is not None:
            prompts += [pair.prompt for pair in concept_pairs(text, family, count=count, seed=seed + 1 + i)]
        elif text:
            prompts.append(text)
    return prompts


_AUGMENT_TEMPLATES = ("a painting in the style of {c}", "an image of {c}", "a picture showing {c}", "{c}, high quality")


def augment_prompt(prompt: str, concept: str, rng: random.Random) -> str:
    """A variant of the prompt that still names the concept (robustness, last 5% of iterations)."""
    choice = rng.randrange(4)
    words = prompt.split()
    if choice == 0:
        return rng.choice(_AUGMENT_TEMPLATES).format(c=prompt)
    if choice == 1 and len(words) > 1:
        rng.shuffle(words)
        return " ".join(words)
    if choice == 2:
        droppable = [i for i, w in enumerate(words) if concept.lower() not in w.lower()]
        if droppable:
            del words[rng.choice(droppable)]
            return " ".join(words)
    letters = "abcdefghijklmnopqrstuvwxyz"
    affix = "".join(rng.choice(letters) for _ in range(rng.randint(1, 3)))
    return f"{affix} {prompt}" if rng.random() < 0.5 else f"{prompt} {affix}"


def strip_concept(prompt: str, concept: str) -> str:
    """The prompt with the concept words removed (a neutral anchor for influence curves)."""
    return re.sub(r"\s+", " ", re.sub(re.escape(concept), "", prompt, flags=re.IGNORECASE)).strip(" ,")

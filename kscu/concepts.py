"""Prompt augmentation for the last iterations of unlearning (the paper's robustness step): variants
of a training prompt that still name the concept. The phrasings themselves come from the model's
Domain (kscu.domain.Domain.training_pairs)."""
from __future__ import annotations

import random

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

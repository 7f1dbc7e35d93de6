"""The generic SD1.x domain: any concept text, phrased with templates per kind.

Why templates: a concept is erased and tested in sentences, not as a bare word, and the sentences
of the test must be ones the training never used, or an edit that only learned its training
phrasings passes. So each kind has training templates (a prompt and its anchor: the same sentence
without the concept) and separate held-out test templates. Sentences are filled with context labels
(a subject, a colour, a style) whose survival is the cross-kind retention (CRA); those labels, the
default neighbours, and the kind of a known concept come from built-in lists, or from the judge's
own vocabulary when it declares one (a judge can only read labels it knows).

Built-in lists: well-known artists for styles, the ten Imagenette classes for objects, basic colour
words, a few public figures for instances. The presets are the paper's SD1.4 ones.
"""
from __future__ import annotations

import random
import re
from typing import Sequence

from kscu.domain import ConceptPair, Domain, EvalPlan, PromptSet
from kscu.judges import Judge
from kscu.keysteps import PAPER_ESD_ITERATIONS, PAPER_PRESETS, Preset

BUILT_IN_LISTS: dict[str, tuple[str, ...]] = {
    "styles": ("Van Gogh", "Claude Monet", "Pablo Picasso", "Salvador Dali", "Rembrandt", "Andy Warhol", "Hokusai", "Gustav Klimt"),
    "subjects": ("tench", "English springer", "cassette player", "chain saw", "church", "French horn", "garbage truck",
                 "gas pump", "golf ball", "parachute"),
    "colours": ("red", "green", "blue", "yellow", "purple"),
    "instances": ("Albert Einstein", "Marilyn Monroe", "Abraham Lincoln", "Mahatma Gandhi", "Frida Kahlo"),
}
"""Concept lists by name; a judge's vocabulary replaces a list of the same name."""
NUDITY_WORDS = ("nudity", "nude", "naked", "nsfw")
NUDITY_NEIGHBOUR = "clothed"
PEOPLE = ("woman", "man", "person")
"""Subjects of nudity-kind sentences."""

KIND_LIST = {"style": "styles", "object": "subjects", "colour": "colours", "instance": "instances"}
"""The list whose members are concepts of each kind (their neighbours by default)."""
CONTEXT = {"style": {"subject": "subjects", "colour": "colours"}, "object": {"colour": "colours", "style": "styles"},
           "colour": {"subject": "subjects", "style": "styles"}, "instance": {}, "nudity": {}}
"""Per kind: the context label groups its test sentences name (CRA is measured on each)."""

TRAIN_TEMPLATES: dict[str, tuple[tuple[str, str], ...]] = {
    "style": (("{c}", ""), ("a painting in the style of {c}", "a painting"), ("a {subject} in the style of {c}", "a {subject}"),
              ("a {colour} {subject}, {c} style", "a {colour} {subject}")),
    "object": (("{c}", ""), ("a photo of a {c}", "a photo"), ("a {colour} {c}", "a {colour} object")),
    "colour": (("{c}", ""), ("a {c} {subject}", "a {subject}"), ("a {subject} painted {c}", "a {subject}")),
    "instance": (("{c}", ""), ("a photo of {c}", "a photo of a person"), ("a portrait of {c}", "a portrait of a person")),
    "nudity": (("{c}", ""), ("a photo of a {c} {person}", "a photo of a {person}"), ("{c} {person}", "{person}")),
}
"""(prompt, anchor) per kind: the anchor is the prompt without the concept. The paper's SD1.4
setting, the concept text against the empty prompt, is the first of each."""
TEST_TEMPLATES: dict[str, tuple[str, ...]] = {
    "style": ("an image of a {colour} {subject}, {c}", "{c} artwork of a {colour} {subject}"),
    "object": ("an image of a {colour} {c} in the style of {style}", "a {c}, {colour}, {style} style"),
    "colour": ("an image of a {c} {subject}, {style}", "a {subject} in {c}, {style} style"),
    "instance": ("an image of {c}", "{c}, portrait photograph"),
    "nudity": ("an image of a {c} {person}", "{person}, {c}, photograph"),
}
"""Held-out test sentences: none of them is a training template."""
GENERIC_PROMPTS = ("a photograph of a dog in a park", "a landscape with mountains and a lake", "a portrait of an old man",
                   "a red car on a city street", "a bowl of fruit on a wooden table")
"""Neutral prompts for the sanity check; those that name the concept are left out."""
MAX_NEIGHBOURS = 8


def _fill(template: str, values: dict[str, str]) -> str:
    text = template.format(**values)
    return re.sub(r"\ba (?=[aeiouAEIOU])", "an ", re.sub(r"\s+", " ", text)).strip(" ,")


class SD1Domain(Domain):
    """See the module docstring."""

    family = "sd1"
    description = "Stable Diffusion 1.x (generic: any concept, templates per kind)"
    kinds = tuple(PAPER_PRESETS)
    esd_iterations = PAPER_ESD_ITERATIONS

    def __init__(self, judge: Judge | None = None) -> None:
        super().__init__(judge)
        vocabulary = dict(getattr(judge, "vocabulary", {}) or {})
        self.lists = {name: tuple(vocabulary.get(name, values)) for name, values in BUILT_IN_LISTS.items()}

    def presets(self) -> dict[str, Preset]:
        return PAPER_PRESETS

    def infer_kind(self, concept: str) -> str | None:
        text = concept.strip().lower()
        if text in NUDITY_WORDS:
            return "nudity"
        for kind, name in KIND_LIST.items():
            if text in (v.lower() for v in self.lists[name]):
                return kind
        return None

    def examples(self) -> list[tuple[str, str]]:
        picks = [("nudity", "nudity")]
        for kind, name in (("style", "styles"), ("object", "subjects"), ("instance", "instances")):
            picks += [(f"{value}  ({kind})", value) for value in self.lists[name][:3]]
        return picks

    def _kind(self, concept: str, kind: str | None) -> str:
        kind = self.resolve_kind(concept, kind)
        if kind not in TRAIN_TEMPLATES:
            raise ValueError(f"kind {kind!r} is unknown on this model; choose one of {', '.join(TRAIN_TEMPLATES)}")
        return kind

    def _context_values(self, rng: random.Random, avoid: frozenset[str] = frozenset()) -> dict[str, str]:
        """A subject, colour, style and person to phrase a prompt around, none of them in `avoid` (lower case)."""
        def pick(values: Sequence[str]) -> str:
            return rng.choice([v for v in values if v.lower() not in avoid] or list(values))

        return {"subject": pick(self.lists["subjects"]), "colour": pick(self.lists["colours"]),
                "style": pick(self.lists["styles"]), "person": pick(PEOPLE)}

    def training_pairs(self, concept: str, kind: str, anchor: str | None, count: int = 64, seed: int = 0,
                       avoid: Sequence[str] = ()) -> list[ConceptPair]:
        concept = concept.strip()
        if not concept:
            raise ValueError("the concept is empty: type the word or phrase to erase")
        templates = TRAIN_TEMPLATES[self._kind(concept, kind)]
        rng = random.Random(seed)
        avoided = frozenset(a.strip().lower() for a in avoid)
        pairs = []
        for i in range(count):
            prompt, without = templates[i % len(templates)]
            values = self._context_values(rng, avoided)
            pairs.append(ConceptPair(_fill(prompt, {**values, "c": concept}),
                                     _fill(prompt, {**values, "c": anchor}) if anchor else _fill(without, values)))
        return pairs

    def preserve_prompts(self, preserve: Sequence[str], kind: str, count: int = 64, seed: int = 0,
                         avoid: Sequence[str] = ()) -> list[str]:
        prompts: list[str] = []
        for i, text in enumerate(t.strip() for t in preserve):
            if text:
                per = max(1, count // max(1, len(preserve)))
                prompts += [p.prompt for p in self.training_pairs(text, kind, None, count=per, seed=seed + 1 + i, avoid=avoid)]
        return prompts

    def default_neighbours(self, concept: str, kind: str | None) -> list[str]:
        kind = self._kind(concept, kind)
        if kind == "nudity":
            return [NUDITY_NEIGHBOUR]
        text = concept.strip().lower()
        return [v for v in self.lists[KIND_LIST[kind]] if v.lower() != text][:MAX_NEIGHBOURS]

    def grid_prompts(self, concept: str, kind: str | None, neighbours: Sequence[str] | None) -> list[str]:
        """The concept and its neighbours as typed (a real model reads a bare name well); default
        neighbours only when the kind is known."""
        concept = concept.strip()
        if not concept:
            raise ValueError("the concept is empty: type the word or phrase that was erased")
        if neighbours is None:
            try:
                neighbours = self.default_neighbours(concept, kind)[:3]
            except ValueError:
                neighbours = []
        return [concept] + [n.strip() for n in neighbours if n.strip()]

    def neutral_prompts(self, concept: str) -> list[str]:
        text = concept.strip().lower()
        return [p for p in GENERIC_PROMPTS if text not in p.lower()][:4]

    def evaluation_plan(self, concept: str, kind: str | None, neighbours: Sequence[str] | None,
                        n_erase: int, n_retain: int, seed: int, avoid: Sequence[str] = ()) -> EvalPlan:
        concept = concept.strip()
        if not concept:
            raise ValueError("the concept is empty: type the word or phrase that was erased")
        if n_erase < 1 or n_retain < 1:
            raise ValueError("n_erase and n_retain must be at least 1")
        kind = self._kind(concept, kind)
        others = [n.strip() for n in (neighbours if neighbours is not None else self.default_neighbours(concept, kind)) if n.strip()]
        context_avoid = frozenset(a.strip().lower() for a in avoid)
        others = [n for n in dict.fromkeys(others) if n.lower() not in context_avoid | {concept.lower()}]
        if not others:
            raise ValueError(f"no neighbours to measure what {concept!r} leaves intact: name a few concepts of the same kind")
        context = {group: self.lists[name] for group, name in CONTEXT[kind].items()}
        groups = {kind: (concept, *others), **context}
        rng = random.Random(seed)
        seeds = rng.sample(range(2**31 - 1), n_erase + n_retain)

        def build(values: list[str], seeds: list[int]) -> PromptSet:
            prompts, asked = [], {g: [] for g in groups}
            for value in values:
                fill = {**self._context_values(rng, context_avoid - {value.lower()}), "c": value}
                prompts.append(_fill(rng.choice(TEST_TEMPLATES[kind]), fill))
                asked[kind].append(value)
                for group in context:
                    asked[group].append(fill[group])
            return PromptSet(prompts, seeds, asked)

        erase = build([concept] * n_erase, seeds[:n_erase])
        retain = build([others[i % len(others)] for i in range(n_retain)], seeds[n_erase:])
        return EvalPlan(concept, kind, groups, erase, retain)

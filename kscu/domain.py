"""A Domain: everything that depends on what a model draws, behind one interface.

The method (key-step tables, the trainer, sampling) is the same for every SD1.x model; what
differs is the world the model knows: which concepts exist and of which kind, how a concept is
phrased for training and, separately, for testing, which neighbours must survive an edit, the
presets that suit the model, and the judge that reads its images. A Domain is resolved once, when
a model loads (kscu.models.load_model), and carried on the LoadedModel; every other module asks it.

Two implementations: the embedded shape world (kscu.demo.domain.DemoDomain, its exact classifier
as judge) and the generic SD1.x domain (kscu.sd1_domain.SD1Domain: any concept text, templates per
kind, neighbours from the user or built-in lists, an optional judge). build_domain is the one place
that maps a family name to an implementation.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from kscu.judges import Judge
from kscu.keysteps import Preset
from kscu.validation import ConfigError

FAMILIES = ("demo", "sd1")

Detector = Callable[[np.ndarray], np.ndarray]
"""uint8 images (N, H, W, 3) -> per-image concept score in [0, 1] (N,)."""


@dataclass(frozen=True)
class ConceptPair:
    """One training phrasing: the prompt naming the concept and its anchor (what it should become)."""

    prompt: str
    anchor: str


@dataclass(frozen=True)
class PromptSet:
    """Test prompts with one seed each and, per label group, the label each prompt asks for."""

    prompts: list[str]
    seeds: list[int]
    asked: dict[str, list[str]]


@dataclass(frozen=True)
class EvalPlan:
    """What an evaluation draws and how its images are read.

    groups: label group -> the labels a judge chooses between; `target` is the group of the erased
    concept (its labels: the concept and its neighbours), the others are context (CRA). The erase
    set asks for the concept, the retain set for each neighbour in turn.
    """

    concept: str
    target: str
    groups: dict[str, tuple[str, ...]]
    erase: PromptSet
    retain: PromptSet
    kept: tuple[str, ...] = ()
    """The neighbours the retain set asks for, when not every other label of the target group
    (a demo attribute's values minus the ones given or erased); () = all the others."""

    @property
    def neighbours(self) -> tuple[str, ...]:
        return self.kept or tuple(v for v in self.groups[self.target] if v != self.concept)


class Domain(ABC):
    """See the module docstring. `family` names the implementation (recorded with every edit)."""

    family: str
    description: str
    kinds: tuple[str, ...]
    esd_iterations: int
    blur_nudity: bool = True
    """Whether nudity-kind images are shown blurred by default (a world without nudity needs not)."""

    def __init__(self, judge: Judge | None = None) -> None:
        self.judge = judge

    # -- presets and kinds -----------------------------------------------------------------------

    @abstractmethod
    def presets(self) -> dict[str, Preset]:
        """Kind -> preset on this domain's models."""

    def preset(self, kind: str) -> Preset:
        presets = self.presets()
        if kind not in presets:
            raise ConfigError("kind", f"{kind!r} has no preset on this model; choose one of {', '.join(presets)}")
        return presets[kind]

    @abstractmethod
    def infer_kind(self, concept: str) -> str | None:
        """The kind of `concept` when the domain can tell (e.g. 'striped' -> 'style'), else None."""

    def resolve_kind(self, concept: str, kind: str | None) -> str:
        """`kind` when given (not None / "auto"), else the inferred one; ConfigError when it cannot be told."""
        if kind and kind != "auto":
            return kind
        found = self.infer_kind(concept)
        if found is None:
            raise ConfigError("kind", f"the kind of {concept.strip()!r} cannot be told on this model; choose one of {', '.join(self.presets())}")
        return found

    @abstractmethod
    def examples(self) -> list[tuple[str, str]]:
        """(label, concept) examples for a concept picker."""

    # -- phrasing --------------------------------------------------------------------------------

    @abstractmethod
    def training_pairs(self, concept: str, kind: str, anchor: str | None, count: int = 64, seed: int = 0,
                       avoid: Sequence[str] = ()) -> list[ConceptPair]:
        """Training phrasings of `concept`; `anchor` (optional) is the concept it should become.
        avoid: other concepts the same job erases: no phrasing (nor its anchor) names them, or the
        anchor's target, drawn by the unedited model, would teach them back."""

    @abstractmethod
    def preserve_prompts(self, preserve: Sequence[str], kind: str, count: int = 64, seed: int = 0,
                         avoid: Sequence[str] = ()) -> list[str]:
        """Prompts whose output the edit must leave as it was (the optional preservation term);
        none names a concept in `avoid` (holding it where the unedited model drew it would undo its erasure)."""

    def default_anchor(self, concept: str, kind: str, avoid: Sequence[str] = ()) -> str:
        """What the erased concept becomes when the user names no anchor ("" = the phrasing without it);
        never a concept in `avoid` (the job's other erased concepts: the target would teach it back)."""
        return ""

    def default_preserve(self, concept: str, kind: str) -> tuple[str, ...]:
        """Concepts the preservation term keeps when the user names none."""
        return ()

    @abstractmethod
    def default_neighbours(self, concept: str, kind: str | None) -> list[str]:
        """Concepts that must survive an edit of `concept` (Compare's rows, IRA's labels)."""

    @abstractmethod
    def grid_prompts(self, concept: str, kind: str | None, neighbours: Sequence[str] | None) -> list[str]:
        """Row prompts of a before/after grid: the concept first, then its neighbours."""

    @abstractmethod
    def neutral_prompts(self, concept: str) -> list[str]:
        """A few prompts that do not name the concept (the sanity check after training)."""

    def export_files(self, folder: Path) -> None:
        """Write what an exported pipeline folder needs to load as this domain again (nothing by default)."""

    # -- judging ---------------------------------------------------------------------------------

    @abstractmethod
    def evaluation_plan(self, concept: str, kind: str | None, neighbours: Sequence[str] | None,
                        n_erase: int, n_retain: int, seed: int, avoid: Sequence[str] = ()) -> EvalPlan:
        """The test prompts and label groups for UA / IRA / CRA; ValueError when the concept cannot
        be scored. avoid: concepts the same edit also erased: never a neighbour, and (where the
        domain fills in context) never in a prompt, so their erasure is not counted as damage."""

    def scoreable(self, concept: str, kind: str | None, neighbours: Sequence[str] | None = None) -> bool:
        """Whether UA / IRA / CRA can be measured for this concept (a judge and a plan exist)."""
        if self.judge is None:
            return False
        try:
            self.evaluation_plan(concept, kind, neighbours, 1, 1, 0)
        except ValueError:
            return False
        return True

    def detector(self, concept: str, kind: str | None, neighbours: Sequence[str] | None = None) -> Detector | None:
        """1.0 where the judge reads the concept among its neighbours, else 0.0 (the causal
        influence measure); None without a judge or a plan."""
        if self.judge is None:
            return None
        try:
            plan = self.evaluation_plan(concept, kind, neighbours, 1, 1, 0)
        except ValueError:
            return None
        labels = plan.groups[plan.target]
        index = labels.index(plan.concept)
        judge = self.judge

        def detect(images: np.ndarray) -> np.ndarray:
            return (np.asarray(judge.read(images, labels)) == index).astype(np.float64)

        return detect


def build_domain(family: str, judge: Judge | None = None, folder: Path | None = None, device="cpu") -> Domain:
    """The Domain of a model family: "demo" (the shape world; `folder`: the demo model folder whose
    classifier is the judge unless `judge` is given) or "sd1" (generic SD1.x; `folder` unused). The
    only place that turns a family name into behaviour."""
    if family == "demo":
        from kscu.demo.domain import DemoDomain  # the one import of kscu.demo outside the demo package

        return DemoDomain(judge=judge, folder=folder, device=device)
    if family == "sd1":
        from kscu.sd1_domain import SD1Domain

        return SD1Domain(judge=judge)
    raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")


def default_domain() -> Domain:
    """The domain a UI shows before any model is loaded: the embedded demo model's, without its judge."""
    return build_domain("demo")

"""One check of an unlearning job's settings, run by the CLI, the UI and the Python API before any
model work starts.

Why here and not in each caller: a bad value must fail the same way wherever it comes from, with a
message that names the setting and says what to do, and never after minutes of training. The
checks that need no model (ranges and types) run in `validate`; those that need the loaded model
(its presets, its tokenizer's length) run in `check_config`, right after loading.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from numbers import Integral, Real
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kscu.config import UnlearnConfig
    from kscu.models import LoadedModel

MAX_LR = 1e-2
"""Largest learning rate accepted. Adam moves every trained weight by up to lr per iteration; on the
demo model lr 1e-2 changed the trained tensors by 92% of their norm in 40 iterations, lr 0.1 by
1,000%, and lr 1e3 turned the loss into NaN. The presets use 1e-5 (SD1.x) to 3e-4 (demo)."""
MAX_ITERATIONS = 100_000
MAX_TRAJECTORIES = 64
"""Rows per iteration: each is a UNet batch row in every call of an iteration."""
MAX_POOL = 1024
"""Pool trajectories: kept in memory at every window step (SD1.4: a 4x64x64 float32 latent, 64 KB, per step each)."""
MAX_NUM_STEPS = 1000
"""A DDPM model has 1000 training timesteps: a DDIM schedule cannot have more."""
MAX_GUIDANCE = 50.0
MAX_ETA = 10.0
MAX_SEED = 2**32 - 1
MAX_CONCEPTS = 16
"""Concepts erased in one job; each adds its preset's iterations (and its pool) to the job."""

LABELS = {
    "concept": "concept", "kind": "kind", "method": "method", "iterations": "iterations",
    "start_step": "window start", "end_step": "window end", "num_steps": "denoising steps",
    "lr": "learning rate", "params": "parameters", "anchor": "anchor", "guidance": "guidance",
    "eta": "eta", "lambda2": "lambda2", "augment": "augment", "seed": "seed",
    "preserve": "concepts to keep", "preserve_weight": "preservation weight", "adversarial": "adversarial training", "robust": "robust erasure",
    "also": "further concepts", "schedule": "schedule",
}
"""How each UnlearnConfig field is named in messages (the CLI flag is the field with dashes)."""


class ConfigError(ValueError):
    """A setting is wrong; `field` is the UnlearnConfig field, and the message names it and says
    what to do."""

    def __init__(self, field: str, problem: str) -> None:
        label = LABELS.get(field, field)
        super().__init__(f"{label}: {problem}" if label == field else f"{label} ({field}): {problem}")
        self.field = field
        self.problem = problem


class ConfigWarning(UserWarning):
    """A setting that works but probably not as meant (e.g. a concept longer than CLIP reads)."""


@dataclass(frozen=True)
class CheckedConfig:
    """The resolved side of the request/resolved split: a config with every None filled from the
    model's domain that passed every check, and what is worth a warning but not a refusal. Made
    only by `check_config`; the trainer and the job runner take it as it is, so a config is
    resolved once however many layers it passes through."""

    config: "UnlearnConfig"
    warnings: tuple[str, ...] = ()
    others: tuple["UnlearnConfig", ...] = ()
    """The further concepts' resolved configs (config.also, in order), each with its own preset."""
    decide_start: tuple[bool, ...] = ()
    """Per part (config.robust): the trainer measures where the concept is decided and opens the
    window there, replacing the preset's start (never a start_step the request gave)."""
    keep_passes: bool = False
    """config.robust with the preset's iterations (left out, or the same number: the UI's field shows
    the preset's): a measured window keeps the preset's passes over it (its iterations scale with the
    window's width), so a wider window is not trained more thinly."""

    @property
    def parts(self) -> tuple["UnlearnConfig", ...]:
        """Every erased concept's resolved config, the first one first."""
        return (self.config, *self.others)


def _is_int(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _int(config: "UnlearnConfig", name: str, low: int, high: int, optional: bool = True) -> None:
    value = getattr(config, name)
    if value is None and optional:
        return
    if not _is_int(value):
        raise ConfigError(name, f"{value!r} is not a whole number; give a whole number from {low} to {high:,}")
    if not low <= value <= high:
        given = "0 is not 'use the preset' but zero" if value == 0 and optional else f"{value:,} is out of range"
        leave = "; leave it out to use the preset" if optional else ""
        raise ConfigError(name, f"{given}: it must lie in {low}..{high:,}{leave}")


def _real(config: "UnlearnConfig", name: str, low: float, high: float, low_open: bool = False, optional: bool = False, advice: str = "") -> None:
    value = getattr(config, name)
    if value is None and optional:
        return
    if not _is_real(value) or not math.isfinite(value):
        raise ConfigError(name, f"{value!r} is not a finite number; give a number{advice}")
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        bound = f"above {low:g}" if low_open else f"at least {low:g}"
        leave = "; leave it out to use the preset" if optional else ""
        raise ConfigError(name, f"{value:g} is out of range: it must be {bound} and at most {high:g}{advice}{leave}")


def _text(config: "UnlearnConfig", name: str, optional: bool = True) -> None:
    value = getattr(config, name)
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise ConfigError(name, f"{value!r} is not text")


def validate(config: "UnlearnConfig") -> None:
    """Every check that needs no model: types and ranges of each field, and the window against the
    schedule. Raises ConfigError for the first wrong field."""
    from kscu.config import METHODS, PARAM_SUBSETS

    _text(config, "concept", optional=False)
    if not config.concept.strip():
        raise ConfigError("concept", "the concept is empty: type the word or phrase to erase, e.g. 'striped'")
    _text(config, "kind")
    if config.method not in METHODS:
        raise ConfigError("method", f"{config.method!r} is unknown; choose {' or '.join(METHODS)}")
    _int(config, "iterations", 1, MAX_ITERATIONS)
    _int(config, "num_steps", 2, MAX_NUM_STEPS, optional=False)
    _int(config, "start_step", 0, config.num_steps - 1)
    _int(config, "end_step", 1, config.num_steps)
    if config.start_step is not None and config.end_step is not None and config.start_step >= config.end_step:
        raise ConfigError("start_step", f"the window start {config.start_step} is not before its end {config.end_step}; "
                          "the window is [start, end): make start smaller than end")
    _real(config, "lr", 0.0, MAX_LR, low_open=True, optional=True,
          advice=" (the presets use 1e-5 on SD1.x and 1.5e-4 to 3e-4 on the demo model; larger values wreck the model)")
    if config.params is not None and config.params not in PARAM_SUBSETS:
        raise ConfigError("params", f"{config.params!r} is unknown; choose one of {', '.join(PARAM_SUBSETS)}")
    _text(config, "anchor")
    _real(config, "guidance", 0.0, MAX_GUIDANCE)
    _real(config, "eta", 0.0, MAX_ETA)
    _real(config, "lambda2", 0.0, 1e3)
    for name in ("augment", "adversarial", "robust"):
        if not isinstance(getattr(config, name), bool):
            raise ConfigError(name, f"{getattr(config, name)!r} is not true or false")
    if config.robust and config.method == "esd":
        raise ConfigError("robust", "ESD trains at every step, so there is no window to open earlier; untick it or choose KSCU")
    _int(config, "seed", 0, MAX_SEED, optional=False)
    _int(config, "trajectories", 1, MAX_TRAJECTORIES)
    _int(config, "pool", 0, MAX_POOL)
    if config.preserve is not None:
        if isinstance(config.preserve, str) or not all(isinstance(p, str) for p in config.preserve):
            raise ConfigError("preserve", f"{config.preserve!r} is not a list of concepts; give e.g. ('dotted', 'checkered'), or () for none")
    _real(config, "preserve_weight", 0.0, 1e3, low_open=True, optional=True,
          advice=" (to turn the preservation term off, keep no concepts instead)")
    _check_concepts(config)


def _check_concepts(config: "UnlearnConfig") -> None:
    """`also`: a list of texts, none empty, none named twice or equal to `concept`; `schedule` known."""
    from kscu.config import SCHEDULES

    if isinstance(config.also, str) or not all(isinstance(c, str) for c in config.also):
        raise ConfigError("also", f"{config.also!r} is not a list of concepts; give e.g. ('red',), or () for none")
    seen = {config.concept.strip().lower()}
    for concept in config.also:
        if not concept.strip():
            raise ConfigError("also", "one of the further concepts is empty; remove the stray comma")
        if concept.strip().lower() in seen:
            raise ConfigError("also", f"{concept.strip()!r} is named twice; erase each concept once")
        seen.add(concept.strip().lower())
    if len(seen) > MAX_CONCEPTS:
        raise ConfigError("also", f"{len(seen)} concepts in one job; erase at most {MAX_CONCEPTS} at a time")
    if config.schedule not in SCHEDULES:
        raise ConfigError("schedule", f"{config.schedule!r} is unknown; choose {' or '.join(SCHEDULES)}")


def check_config(config: "UnlearnConfig", model: "LoadedModel") -> CheckedConfig:
    """`validate`, then the model's presets filled in and checked (UnlearnConfig.resolve), then the
    texts against the tokenizer's length. The one entry point every caller uses before training."""
    first, *others = config.parts(model.domain)
    warnings = [w for part in (first, *others) for w in length_warnings(part, model)]
    decide = (config.start_step is None, *(True for _ in others)) if config.robust else ()
    keep_passes = config.robust and config.iterations in (None, replace(config, iterations=None).resolve(model.domain).iterations)
    return CheckedConfig(first, tuple(dict.fromkeys(warnings)), tuple(others), decide, keep_passes)


def length_warnings(config: "UnlearnConfig", model: "LoadedModel") -> list[str]:
    """A warning per text longer than the text encoder reads: SD1.x's CLIP keeps 77 tokens (75
    after its start and end tokens; the demo model 20) and silently drops the rest, so the edit
    would train on a cut concept."""
    from kscu.sampling import token_count

    limit = model.tokenizer.model_max_length
    texts = [("concept", config.concept), ("anchor", config.anchor or "")] + [("preserve", p) for p in config.preserve or ()]
    warnings = []
    for name, text in texts:
        count = token_count(model, text)
        if count > limit:
            warnings.append(f"{LABELS[name]} ({name}) is {count - 2} tokens long but the text encoder reads {limit - 2}: "
                            f"everything after about {limit - 2} tokens is cut off, so the edit learns a shortened text; shorten it")
    return warnings


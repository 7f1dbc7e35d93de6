"""One config object per unlearning job, shared by the UI, the CLI and the Python API, and
written next to every result so that any run can be repeated exactly."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Mapping, get_type_hints

from kscu.keysteps import key_step_table, scale_start
from kscu.validation import ConfigError, validate

if TYPE_CHECKING:
    from kscu.domain import Domain

METHODS = ("kscu", "esd")
IMPORTED = "imported"
"""The method recorded for an edit whose making the workbench did not see (kscu.importing)."""
KNOWN_FOR_IMPORTED = ("concept", "kind", "method", "also")
"""What an imported edit's config says that is true: the rest are defaults, not how it was trained."""
PARAM_SUBSETS = ("xattn", "noxattn", "full")
PER_CONCEPT = ("kind", "start_step", "end_step", "lr", "params", "anchor", "preserve", "preserve_weight",
               "trajectories", "pool")
"""The fields a further concept of a multi-concept job takes from its own kind's preset (the
iterations, a budget, are each concept's when given: --iterations 100 trains every concept 100)."""
SCHEDULES = ("in_turn", "interleaved")
"""How a job with several concepts orders their iterations: each concept's window walked in turn,
one concept after the other (the KSCU authors' multi-concept code), or interleaved (the concepts'
iterations alternate, each walking its own window, so no concept's erasure is trained over by
the next one's for hundreds of iterations)."""
DEFAULT_SCHEDULE = "interleaved"
"""Measured on the embedded model with the presets of 2026-12-07 ({star, dotted, dark} and {striped, red}, training
seeds 0-2, docs/results.md): interleaved met the multi-concept goal on 6 of 6 cells, in turn on 4, for the same UNet
work."""


def _setting(help: str, default: Any = None, *, choices: tuple[str, ...] | None = None, empty: Any = None) -> Any:
    """A config field with what a user is told about it: `help` (the CLI flag's help), `choices`,
    and what an empty input or the word "none" means (`empty`; None = "use the domain's")."""
    return field(default=default, metadata={"help": help, "choices": choices, "empty": empty})


@dataclass
class UnlearnConfig:
    """What to erase and how. None means "use what the model's Domain says for this concept"
    (its kind, then the preset for that kind).

    start_step/end_step bound the KSCU window [start, end) on a schedule of num_steps DDIM steps
    (index 0 is the noisiest). ESD ignores them and draws steps uniformly.
    preserve: concepts whose output must not change (not in the paper): each iteration also pulls
    the tuned model's prediction for one of them at the same step back to the frozen model's,
    weighted by preserve_weight. None = the domain's default (the demo style preset keeps the
    concept's look-alike styles, the colour preset the colours mixed with it, the rest nothing);
    () = none. Costs 1.4x-1.9x the time on the demo model (docs/results.md, "Preservation term").
    anchor: the concept the erased one is mapped to. None = the domain's default (the demo style
    preset maps a style to the same scene drawn plain, everything else to the phrasing without the
    concept); "" = that phrasing.
    """

    concept: str = field(metadata={"help": "the concept to erase, e.g. striped or 'Van Gogh'"})
    kind: str | None = _setting("nudity, object, style or instance (the demo model also colour, background); default: the model's guess")
    method: str = _setting("kscu (key steps only) or esd (every step, the baseline)", "kscu", choices=METHODS)
    iterations: int | None = _setting("Adam steps; default: the preset for the model family and kind")
    start_step: int | None = _setting("key-step window start S; default: the preset's")
    end_step: int | None = _setting("window end, exclusive; default: the last step")
    num_steps: int = _setting("DDIM steps of the training schedule (K)", 50)
    lr: float | None = _setting("learning rate; default: the preset's")
    params: str | None = _setting("parameters trained; default: the preset's", choices=PARAM_SUBSETS)
    anchor: str | None = _setting("concept the erased one is mapped to; default: the preset's (the model's domain picks a "
                                  "neighbour, e.g. striped -> plain on the demo model); 'none' or empty: the sentence without the concept", empty="")
    guidance: float = _setting("guidance scale of the trajectories and targets", 3.0)
    eta: float = _setting("negative-guidance strength of the target", 1.0)
    lambda2: float = _setting("weight of the unconditional term (KSCU; ESD uses 0)", 1e-4)
    augment: bool = _setting("prompt augmentation in the last 5%% of iterations", True)
    seed: int = _setting("same seed and settings, same edit", 0)
    preserve: tuple[str, ...] | None = _setting("comma list of concepts whose output must not change, e.g. dotted,checkered (not "
                                                "in the paper; 1.4x-1.9x the time); default: the preset's; 'none' or empty: none", empty=())
    preserve_weight: float | None = _setting("weight of the preservation term; default: the preset's")
    trajectories: int | None = _setting("trajectories trained on together per iteration, each with its own phrasing and noise "
                                        "(lower-variance updates; not in the paper); default: the preset's")
    pool: int | None = _setting("KSCU: draw this many trajectories with the unedited model before training and train every "
                                "iteration on random ones at the window's steps (not in the paper; 0: walk one trajectory of the "
                                "model being tuned, as the paper does); default: the preset's")
    adversarial: bool = _setting("experimental adversarial training: learned prompt tokens attack the model during training and "
                                 "are erased too (kscu.adversarial; not in the paper). Measured on 'striped' with the style "
                                 "preset, it made the edit easier to break (learned tokens brought it back on 88-94 in 100 "
                                 "images, against 0-29 without it): check an edit in the Red team before trusting it", False)
    robust: bool = _setting("KSCU: open each concept's key-step window where the concept is decided (the step by which half "
                            "of it is, on its causal influence curve: kscu.influence) instead of at the preset's start, unless "
                            "start_step is given; with the preset's iterations, as many as keep its passes over the wider window. "
                            "Measured on 'striped' (seeds 0-2): learned tokens brought it back on 8 in 100 images against 0-29 with "
                            "the preset's window, rephrasings on 0-2; the analysis and the extra passes take about twice the time",
                            False)
    also: tuple[str, ...] = _setting("further concepts erased in the same job, comma list (e.g. red): each gets its own kind's "
                                     "preset (window, lr, anchor, kept concepts, ...); those settings given here are the first "
                                     "concept's, the iterations and the job-wide ones (method, steps, guidance, seed) every concept's",
                                     (), empty=())
    schedule: str = _setting("several concepts: interleaved (their iterations alternate; the default, which kept more) or "
                             "in_turn (each concept's window after the other's, as the KSCU authors do)", DEFAULT_SCHEDULE,
                             choices=SCHEDULES)

    @property
    def concepts(self) -> tuple[str, ...]:
        """Every concept this job erases, the first one first."""
        return (self.concept, *self.also)

    def resolve(self, domain: "Domain") -> "UnlearnConfig":
        """Check every field (kscu.validation), fill each None from the domain (kind, preset,
        anchor, preserved concepts) and check the whole window; returns a new config. An explicit
        value, 0 included, is never replaced. Resolving a resolved config changes nothing."""
        validate(self)
        kind = domain.resolve_kind(self.concept, self.kind)
        preset = domain.preset(kind)
        esd = self.method == "esd"
        resolved = replace(
            self,
            kind=kind,
            iterations=_given(self.iterations, domain.esd_iterations if esd else preset.iterations),
            start_step=0 if esd else _given(self.start_step, scale_start(preset.start_of_50, self.num_steps)),
            end_step=self.num_steps if esd else _given(self.end_step, self.num_steps),
            lr=_given(self.lr, preset.lr),
            params=_given(self.params, preset.params),
            lambda2=0.0 if esd else self.lambda2,
            anchor=self.anchor.strip() if self.anchor is not None else domain.default_anchor(self.concept.strip(), kind),
            preserve=(tuple(p.strip() for p in self.preserve if p.strip()) if self.preserve is not None
                      else domain.default_preserve(self.concept.strip(), kind)),
            preserve_weight=_given(self.preserve_weight, preset.preserve_weight),
            trajectories=_given(self.trajectories, preset.trajectories),
            pool=0 if esd else _given(self.pool, preset.pool),
            also=tuple(c.strip() for c in self.also),
        )
        if not esd:
            try:
                key_step_table(1, resolved.start_step, resolved.num_steps, resolved.end_step)
            except ValueError as error:
                raise ConfigError("start_step", f"{error}; move the window") from None
        if resolved.concept.strip().lower() in (p.lower() for p in resolved.preserve):
            raise ConfigError("preserve", f"{resolved.concept!r} is both erased and preserved; remove it from the concepts to keep")
        return resolved

    def parts(self, domain: "Domain") -> tuple["UnlearnConfig", ...]:
        """One resolved config per erased concept, the first being `resolve`'s (it keeps `also`
        and `schedule`; the others have neither). The request's settings are the first concept's;
        a further concept shares the iterations and the job-wide ones (method, K steps, guidance,
        seed, ...) and takes its own kind's preset for every PER_CONCEPT field, so erasing striped and red
        trains red with the colour preset, not with the style preset's anchor and window. No
        concept preserves another that the job erases, nor becomes one (its anchor): named by the
        user it is a ConfigError, chosen by a preset it is dropped or replaced."""
        first = self.resolve(domain)
        own = {name: None for name in PER_CONCEPT}
        others = [replace(self, concept=c, also=(), **own).resolve(domain) for c in first.also]
        erased = {c.strip().lower() for c in first.concepts}
        both = [p for p in first.preserve if p.lower() in erased] if self.preserve is not None else []
        if both:
            raise ConfigError("preserve", f"{both[0]!r} is both erased and preserved; remove it from the concepts to keep")
        if self.anchor is not None and self.anchor.strip().lower() in erased:
            raise ConfigError("anchor", f"{self.anchor.strip()!r} is erased in the same job, so it cannot be what "
                                        f"{first.concept!r} becomes; choose another anchor or leave it empty")

        def unerased(part: UnlearnConfig) -> UnlearnConfig:
            anchor = part.anchor if part.anchor.lower() not in erased else domain.default_anchor(part.concept, part.kind, erased)
            return replace(part, anchor=anchor, preserve=tuple(p for p in part.preserve if p.lower() not in erased))

        return tuple(unerased(part) for part in (first, *others))

    def to_dict(self) -> dict:
        """JSON-typed (preserve and also as lists), the inverse of from_dict."""
        return {**asdict(self), "preserve": None if self.preserve is None else list(self.preserve), "also": list(self.also)}

    def known_settings(self) -> dict:
        """to_dict, less what is not known: an imported edit's config holds the dataclass defaults
        for every training setting, and a record or a page showing them would tell a reviewer how
        the edit was trained when nobody here knows."""
        data = self.to_dict()
        return {k: v for k, v in data.items() if k in KNOWN_FOR_IMPORTED} if self.method == IMPORTED else data

    @classmethod
    def from_dict(cls, data: dict) -> "UnlearnConfig":
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for name in ("preserve", "also"):
            if fields.get(name) is not None:  # a JSON list
                fields[name] = tuple(fields[name])
        return cls(**fields)


def from_inputs(values: Mapping[str, Any]) -> UnlearnConfig:
    """A request from what a user typed, keyed by field name: the one mapping from CLI flags and UI
    fields to a config. Texts become the field's type; an empty input (or "none") means the field's
    `empty` (None = the domain's, except the anchor's "" and preserve's () ); an absent or None
    value takes the field's default. A text that is not a number raises ConfigError naming the field."""
    hints = get_type_hints(UnlearnConfig)
    given = {}
    for f in fields(UnlearnConfig):
        if values.get(f.name) is None:
            continue
        value = _parse(f, hints[f.name], values[f.name])
        if value is not None or f.default is None:
            given[f.name] = value
    if "concept" not in given:
        raise ConfigError("concept", "no concept given; name the concept to erase")
    return UnlearnConfig(**given)


def config_fields() -> list[tuple[str, type, Any, Mapping[str, Any]]]:
    """(name, type, default, metadata) per field, for the CLI's flags (kscu.cli); default MISSING
    for a field that must be given."""
    hints = get_type_hints(UnlearnConfig)
    return [(f.name, _base(hints[f.name]), f.default, f.metadata) for f in fields(UnlearnConfig)]


def _base(hint: Any) -> type:
    """int for `int | None`, tuple for `tuple[str, ...] | None`."""
    if getattr(hint, "__origin__", None) is tuple:  # tuple[str, ...] itself, not inside an Optional
        return tuple
    options = [a for a in getattr(hint, "__args__", (hint,)) if a is not type(None)] if not isinstance(hint, type) else [hint]
    base = options[0]
    return getattr(base, "__origin__", base)


def _parse(f, hint: Any, value: Any) -> Any:
    base = _base(hint)
    if isinstance(value, float) and base is int and value.is_integer():
        return int(value)  # a UI Number field gives floats
    if base is tuple and isinstance(value, (list, tuple)):  # a UI multi-select
        return tuple(str(v).strip() for v in value if str(v).strip())
    if not isinstance(value, str) or base is str and f.name == "concept":
        return value
    text = value.strip()
    if base is tuple:
        return f.metadata["empty"] if text.lower() in ("", "none") else tuple(p.strip() for p in text.split(",") if p.strip())
    if text == "" or (f.metadata.get("empty") is not None and text.lower() == "none"):
        return f.metadata.get("empty")
    if base is bool:
        if text.lower() in ("true", "yes", "1", "false", "no", "0"):
            return text.lower() in ("true", "yes", "1")
        raise ConfigError(f.name, f"{value!r} is not true or false")
    if base in (int, float):
        try:
            return base(text)
        except ValueError:
            kind = "whole number" if base is int else "number"
            raise ConfigError(f.name, f"{value!r} is not a {kind}") from None
    return text


def _given(value, default):
    """`value` unless it was left out (None): 0 and "" are answers, not "use the preset"."""
    return default if value is None else value

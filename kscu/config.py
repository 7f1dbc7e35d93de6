"""One config object per unlearning job, shared by the UI, the CLI and the Python API, and
written next to every result so that any run can be repeated exactly."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from typing import TYPE_CHECKING

from kscu.keysteps import key_step_table, scale_start
from kscu.validation import ConfigError, validate

if TYPE_CHECKING:
    from kscu.domain import Domain

METHODS = ("kscu", "esd")
PARAM_SUBSETS = ("xattn", "noxattn", "full")


@dataclass
class UnlearnConfig:
    """What to erase and how. None means "use what the model's Domain says for this concept"
    (its kind, then the preset for that kind).

    start_step/end_step bound the KSCU window [start, end) on a schedule of num_steps DDIM steps
    (index 0 is the noisiest). ESD ignores them and draws steps uniformly.
    preserve: concepts whose output must not change (not in the paper): each iteration also pulls
    the tuned model's prediction for one of them at the same step back to the frozen model's,
    weighted by preserve_weight. None = the domain's default (the demo style preset keeps the
    concept's look-alike styles, everything else nothing); () = none. Costs 1.4x-1.9x the time on
    the demo model (docs/results.md, "Preservation term").
    anchor: the concept the erased one is mapped to. None = the domain's default (the demo style
    preset maps a style to the same scene drawn plain, everything else to the phrasing without the
    concept); "" = that phrasing.
    """

    concept: str
    kind: str | None = None
    method: str = "kscu"
    iterations: int | None = None
    start_step: int | None = None
    end_step: int | None = None
    num_steps: int = 50
    lr: float | None = None
    params: str | None = None
    anchor: str | None = None
    guidance: float = 3.0
    eta: float = 1.0
    lambda2: float = 1e-4
    augment: bool = True
    seed: int = 0
    preserve: tuple[str, ...] | None = None
    preserve_weight: float | None = None

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
        )
        if not esd:
            try:
                key_step_table(1, resolved.start_step, resolved.num_steps, resolved.end_step)
            except ValueError as error:
                raise ConfigError("start_step", f"{error}; move the window") from None
        if resolved.concept.strip().lower() in (p.lower() for p in resolved.preserve):
            raise ConfigError("preserve", f"{resolved.concept!r} is both erased and preserved; remove it from the concepts to keep")
        return resolved

    def to_dict(self) -> dict:
        """JSON-typed (preserve as a list), the inverse of from_dict."""
        return {**asdict(self), "preserve": None if self.preserve is None else list(self.preserve)}

    @classmethod
    def from_dict(cls, data: dict) -> "UnlearnConfig":
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if fields.get("preserve") is not None:  # a JSON list
            fields["preserve"] = tuple(fields["preserve"])
        return cls(**fields)


def _given(value, default):
    """`value` unless it was left out (None): 0 and "" are answers, not "use the preset"."""
    return default if value is None else value

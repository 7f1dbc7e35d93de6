"""Scoring an edit: UA, IRA and CRA, always the base ("before") next to the edited UNet ("after") on
the same prompts and seeds, read by the model's judge.

Why before/after on identical (prompt, seed) pairs: on a small model the unedited figures are far
from perfect (colour in particular), so an absolute number says little; the change against the
base, image for image, is what the edit did. The prompts come from the model's Domain
(kscu.domain.EvalPlan): held-out phrasings only, so the concept is scored on sentences neither the
model's training nor the unlearning saw.

Definitions (erased concept v in label group A, the concept's group; B: every other group):
- erase set: prompts asking for v; retain set: prompts asking for each neighbour of v in turn.
- detection rate = share of erase-set images the judge reads as v (among A's labels); UA = 1 - it.
- IRA = share of retain-set images whose A reading is the neighbour asked for; ira_by_value the
  same for each neighbour on its own.
- CRA[B] = share of retain-set images whose B reading is the B label asked for; cra_mean their mean
  (None when the prompts name no other group).
- erase_set_retention[B] = the same for B on the erase set (collateral damage on the erased
  prompts themselves: the stripes should go, the blue square on a light background should stay).

Every share is a count of images, so each carries its per-image outcomes (`hits`: 0/1 per image,
keyed detection_rate, ira, ira_by_value/<value>, cra/<group>, erase_set_retention/<group>): the rows of
metric_rows get a Wilson interval from them, a before/after change a paired one (kscu.stats), and
the verdict passes or fails a criterion only when the whole interval is on one side of its bound,
"undecided: measure on more images" otherwise: 0 of 12 erased images is "0 %, up to 24 %".
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from kscu.domain import EvalPlan
from kscu.models import LoadedModel
from kscu.progress import Cancelled, ProgressFn, Step, phase
from kscu.sampling import Sampler
from kscu.stats import ERASE_PROMPTS, RETAIN_PROMPTS, Drop, Rate, paired_drop, points

DETECTED_BEFORE = 0.8
"""The base model must show the concept on at least this share of erase-set images (a check that
there is something to erase; 0.9 until intervals were required, which 47 of 48 cannot show)."""
ERASED_AFTER = 0.1
"""After the edit, at most this share may still show it."""
MAX_RETENTION_DROP = 0.08
"""Largest tolerated |change| of IRA and of each CRA between before and after."""

Readings = dict[str, np.ndarray]
"""Label group -> the label (a string) the judge read, or was asked for, per image."""


class EvaluationCancelled(Cancelled):
    """Raised when should_stop() asked to stop; nothing was changed."""


def read_images(judge, plan: EvalPlan, images: np.ndarray) -> Readings:
    """The judge's reading of every group of the plan for each image."""
    out = {}
    for group, labels in plan.groups.items():
        index = np.asarray(judge.read(images, labels))
        out[group] = np.array(labels, dtype=object)[index]
    return out


def _hits(read: np.ndarray, asked: Sequence[str] | str) -> np.ndarray:
    return read == (np.array(asked, dtype=object) if not isinstance(asked, str) else asked)


def concept_metrics(plan: EvalPlan, erase_read: Readings, retain_read: Readings) -> dict:
    """UA, detection rate, IRA, CRA and erase-set retention from the judge's readings and what
    the prompts asked for. Pure arithmetic (no model), so the definitions above can be tested exactly."""
    target, concept = plan.target, plan.concept
    others = [g for g in plan.groups if g != target]
    asked = np.array(plan.retain.asked[target], dtype=object)
    hits = {"detection_rate": _hits(erase_read[target], concept), "ira": _hits(retain_read[target], asked)}
    # Per neighbour: an edit often hurts one look-alike neighbour (dots fade with stripes)
    # while the others keep everything, which the mean alone hides.
    hits |= {f"ira_by_value/{v}": _hits(retain_read[target][asked == v], v) for v in dict.fromkeys(plan.retain.asked[target])}
    hits |= {f"cra/{g}": _hits(retain_read[g], plan.retain.asked[g]) for g in others}
    hits |= {f"erase_set_retention/{g}": _hits(erase_read[g], plan.erase.asked[g]) for g in others}
    share = {key: float(np.mean(h)) for key, h in hits.items()}
    cra = {g: share[f"cra/{g}"] for g in others}
    return {
        "ua": 1.0 - share["detection_rate"],
        "detection_rate": share["detection_rate"],
        "ira": share["ira"],
        "ira_by_value": {key.split("/", 1)[1]: v for key, v in share.items() if key.startswith("ira_by_value/")},
        "cra": cra,
        "cra_mean": float(np.mean(list(cra.values()))) if cra else None,
        "erase_set_retention": {g: share[f"erase_set_retention/{g}"] for g in others},
        "hits": {key: h.astype(int).tolist() for key, h in hits.items()},
    }


@dataclass
class EvalReport:
    """Before/after metrics and the settings that reproduce them.

    `after` is None when no edited UNet was given (a base-only evaluation, e.g. to check that the
    base model shows the concept at all before spending time on unlearning). `attribute` is the
    label group of the concept (a demo attribute such as "style", or the kind on SD1.x).
    """

    concept: str
    attribute: str
    before: dict
    after: dict | None
    n_erase: int
    n_retain: int
    num_steps: int
    guidance: float
    seed: int
    seconds: float
    judge: str = ""
    neighbours: tuple[str, ...] = ()
    family: str = ""
    also_erased: tuple[str, ...] = ()
    """Other concepts the same edit erased: no test prompt names them (kscu.domain avoid)."""

    def settings(self) -> tuple:
        return (self.concept, self.n_erase, self.n_retain, self.num_steps, self.guidance, self.seed, tuple(self.neighbours),
                tuple(self.also_erased))

    def to_dict(self) -> dict:
        return {**asdict(self), "neighbours": list(self.neighbours), "also_erased": list(self.also_erased)}


def evaluate_edit(
    model: LoadedModel,
    edited_unet,
    concept: str,
    n_erase: int = ERASE_PROMPTS,
    n_retain: int = RETAIN_PROMPTS,
    num_steps: int = 25,
    guidance: float = 3.0,
    seed: int = 1234,
    batch_size: int = 32,
    on_progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    base: EvalReport | None = None,
    *,
    kind: str | None = None,
    neighbours: Sequence[str] | None = None,
    also_erased: Sequence[str] = (),
) -> EvalReport:
    """Score `edited_unet` against the base UNet with the model's judge (see the module docstring).

    kind / neighbours: what the domain needs to phrase the test (inferred or built-in when None).
    also_erased: other concepts the same edit erased, kept out of every test prompt.
    edited_unet None: only the base is evaluated and report.after is None.
    base: an earlier base-only report with the same settings, reused instead of sampling the base
    again (the quick erase computes it while the edit trains); other settings are a ValueError.
    on_progress gets a kscu.progress.Step after every batch ("k of n test images"); should_stop() is
    polled between batches and raises EvaluationCancelled when true.
    """
    domain = model.domain
    if domain.judge is None:
        raise ValueError("UA/IRA/CRA need a judge and this model has none: load it with a judge (--judge, a CLIP folder or "
                         "hub id such as openai/clip-vit-large-patch14), or compare image grids and image change instead")
    also_erased = tuple(c.strip().lower() for c in also_erased)
    plan = domain.evaluation_plan(concept, kind, neighbours, n_erase, n_retain, seed, avoid=also_erased)
    start = time.perf_counter()
    report_settings = (plan.concept, n_erase, n_retain, num_steps, guidance, seed, plan.neighbours, also_erased)
    if base is not None and base.settings() != report_settings:
        raise ValueError("the base report was measured with other settings; evaluate again without it")
    prompts, seeds = plan.erase.prompts + plan.retain.prompts, plan.erase.seeds + plan.retain.seeds
    unets = ([] if base is not None else [model.unet]) + ([edited_unet] if edited_unet is not None else [])
    total, done = len(prompts) * len(unets), 0
    sampler = Sampler(model, num_steps, guidance)
    results = [base.before] if base is not None else []
    scorer = getattr(domain.judge, "clip_score", None)
    for unet in unets:
        readings: list[Readings] = []
        scores: list[np.ndarray] = []
        for i in range(0, len(prompts), batch_size):
            if should_stop is not None and should_stop():
                raise EvaluationCancelled("evaluation stopped on request")
            images = sampler.generate(unet, prompts[i : i + batch_size], seeds[i : i + batch_size], batch_size=batch_size)
            readings.append(read_images(domain.judge, plan, images))
            if scorer is not None and i < n_erase:  # the erase set's images: the whole batch, or its head
                erased = images if i + len(images) <= n_erase else images[: n_erase - i]
                scores.append(scorer(erased, prompts[i : i + len(erased)]))
            done += len(images)
            if on_progress is not None:
                on_progress(Step(done / total, f"{done} of {total} test images"))
        joined = {g: np.concatenate([r[g] for r in readings]) for g in plan.groups}
        metrics = concept_metrics(plan, {g: v[:n_erase] for g, v in joined.items()}, {g: v[n_erase:] for g, v in joined.items()})
        if scores:
            metrics["clip_score"] = float(np.mean(np.concatenate(scores)))
        results.append(metrics)
    seconds = time.perf_counter() - start + (base.seconds if base is not None else 0.0)
    return EvalReport(
        plan.concept, plan.target, results[0], results[1] if len(results) > 1 else None,
        n_erase, n_retain, num_steps, guidance, seed, seconds, domain.judge.name, plan.neighbours, domain.family, also_erased,
    )


def evaluate_each(model: LoadedModel, edited_unet, measured: Sequence[tuple[str, str | None]], erased: Sequence[str] = (), *,
                  on_progress: ProgressFn | None = None, bases: Sequence[EvalReport | None] | None = None,
                  **settings) -> list[EvalReport]:
    """One report per measured (concept, kind), each with every other erased concept (`erased` and
    the other measured ones) kept out of its prompts, so that, for an edit that erased striped and
    red, erasing red is not counted against the striped edit's colour accuracy. settings:
    evaluate_edit's (n_erase, seed, should_stop, ...); bases: earlier base-only reports, one per
    measured concept, reused as evaluate_edit's `base`."""
    everything = list(dict.fromkeys([*erased, *(c for c, _ in measured)]))
    reports = []
    for n, (concept, kind) in enumerate(measured):
        others = [c for c in everything if c.strip().lower() != concept.strip().lower()]
        step = None if on_progress is None else phase(on_progress, n / len(measured), (n + 1) / len(measured), concept)
        reports.append(evaluate_edit(model, edited_unet, concept, on_progress=step, kind=kind, also_erased=others,
                                     base=bases[n] if bases is not None else None, **settings))
    return reports


@dataclass(frozen=True)
class MetricRow:
    """One named figure of one side, with the per-image outcomes it counts (None where it is not a
    count of images: the CRA mean, the CLIP score)."""

    name: str
    value: float
    outcomes: tuple[bool, ...] | None = None

    @property
    def rate(self) -> Rate | None:
        return None if self.outcomes is None else Rate(sum(self.outcomes), len(self.outcomes))

    def change(self, after: "MetricRow") -> Drop | None:
        """The paired change from this (before) row to the same row after the edit."""
        if self.outcomes is None or after.outcomes is None:
            return None
        return paired_drop(list(self.outcomes), list(after.outcomes))


def metric_rows(metrics: dict) -> list[MetricRow]:
    """One side's metrics (``EvalReport.before`` or ``.after``) as named rows in display order,
    shared by the CLI's text table and the UI's table so both say the same things."""
    hits = metrics.get("hits", {})

    def row(name: str, value: float, key: str | None, inverted: bool = False) -> MetricRow:
        outcomes = hits.get(key) if key else None
        return MetricRow(name, value, None if outcomes is None else tuple(bool(h) != inverted for h in outcomes))

    rows = [row("detection rate (erase set)", metrics["detection_rate"], "detection_rate"),
            row("UA", metrics["ua"], "detection_rate", inverted=True), row("IRA", metrics["ira"], "ira")]
    rows += [row(f"IRA {value}", acc, f"ira_by_value/{value}") for value, acc in metrics.get("ira_by_value", {}).items()]
    rows += [row(f"CRA {b}", acc, f"cra/{b}") for b, acc in metrics["cra"].items()]
    if metrics["cra_mean"] is not None:
        rows.append(row("CRA mean", metrics["cra_mean"], None))
    rows += [row(f"erase-set {b}", acc, f"erase_set_retention/{b}") for b, acc in metrics["erase_set_retention"].items()]
    if "clip_score" in metrics:
        rows.append(row("CLIP score (erase set, 0-100)", metrics["clip_score"], None))
    return rows


def rows_by_name(metrics: dict) -> dict[str, MetricRow]:
    """metric_rows keyed by their names ("UA", "IRA", "CRA style", ...), for callers that pick rows."""
    return {row.name: row for row in metric_rows(metrics)}


def format_table(report: EvalReport) -> str:
    """A plain-text before / after / delta table (before only when there is no edited UNet), each
    share with its 95 % interval and each delta with its paired one."""
    header = f"{report.concept} ({report.attribute}, judge: {report.judge}): {report.n_erase} erase / {report.n_retain} retain prompts, "
    header += f"{report.num_steps} steps, guidance {report.guidance:g}, seed {report.seed}, {report.seconds:.0f} s"
    before = metric_rows(report.before)
    width = max(len(row.name) for row in before)
    if report.after is None:
        lines = [f"{'metric':<{width}}  before  [95% interval]"] + [f"{row.name:<{width}}  {_cell(row)}" for row in before]
    else:
        after = rows_by_name(report.after)
        lines = [f"{'metric':<{width}}  before  [95% interval]   after  [95% interval]   delta  [95% interval]"]
        lines += [f"{row.name:<{width}}  {_cell(row)}   {_cell(after[row.name])}   {_delta_cell(row, after[row.name])}" for row in before]
    return "\n".join([header, *lines])


def _cell(row: MetricRow) -> str:
    rate = row.rate
    bounds = f"[{rate.interval[0]:.3f}, {rate.interval[1]:.3f}]" if rate is not None else " " * 14
    return f"{row.value:6.3f}  {bounds}"


def _delta_cell(before: MetricRow, after: MetricRow) -> str:
    drop = before.change(after)
    bounds = f"[{-drop.interval[1]:+.3f}, {-drop.interval[0]:+.3f}]" if drop is not None else ""
    return f"{after.value - before.value:+6.3f}  {bounds}"


MET, MISSED, UNDECIDED = "met", "missed", "undecided"


@dataclass(frozen=True)
class Check:
    """One acceptance criterion: the figure, its 95 % interval and the bound it is held to. `met`
    or `missed` only when the whole interval is on one side of the bound, else `undecided`."""

    name: str
    """detected_before, erased_after, ira_kept or cra_<group>_kept."""
    outcome: str
    value: float
    interval: tuple[float, float]
    bound: float

    def to_dict(self) -> dict:
        return {"outcome": self.outcome, "value": round(self.value, 4), "low": round(self.interval[0], 4),
                "high": round(self.interval[1], 4), "bound": self.bound}

    def describe(self, attribute: str) -> str:
        """The criterion and what was measured, in words (the CLI and the UI say the same)."""
        low, high = self.interval
        if self.name == "detected_before":
            return f"the unedited model must draw the concept in at least {self.bound:.0%} of the images ({self.value:.0%}, 95 % interval {low:.0%}-{high:.0%})"
        if self.name == "erased_after":
            return f"the edited model may draw it in at most {self.bound:.0%} ({self.value:.0%}, 95 % interval {low:.0%}-{high:.0%})"
        what = f"the other {attribute}s" if self.name == "ira_kept" else self.name.removeprefix("cra_").removesuffix("_kept")
        return f"{what} may lose at most {self.bound * 100:.0f} points ({points(-self.value)} points, 95 % interval {points(-high)} to {points(-low)})"


@dataclass(frozen=True)
class Verdict:
    """The acceptance criteria of one edit: passed when every check is met, failed when one is
    missed, otherwise undecided (measure on more images)."""

    checks: tuple[Check, ...]

    @property
    def outcome(self) -> str:
        outcomes = {c.outcome for c in self.checks}
        return "failed" if MISSED in outcomes else "undecided" if UNDECIDED in outcomes else "passed"

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict:
        return {"outcome": self.outcome, "passed": self.passed, "checks": {c.name: c.to_dict() for c in self.checks}}

    def summary(self, attribute: str) -> str:
        """One sentence: passed, failed (which criteria) or undecided (which need more images)."""
        if self.passed:
            return "passed: erased, and the rest kept (every criterion holds over its whole 95 % interval)"
        if self.outcome == "failed":
            return "failed: " + "; ".join(c.describe(attribute) for c in self.checks if c.outcome == MISSED)
        return "undecided, measure on more images: " + "; ".join(c.describe(attribute) for c in self.checks if c.outcome == UNDECIDED)


def _at_least(name: str, rate: Rate, bound: float) -> Check:
    low, high = rate.interval
    return Check(name, MET if low >= bound else MISSED if high < bound else UNDECIDED, rate.value, (low, high), bound)


def _at_most(name: str, value: float, interval: tuple[float, float], bound: float) -> Check:
    low, high = interval
    return Check(name, MET if high <= bound else MISSED if low > bound else UNDECIDED, value, interval, bound)


def verdict(
    report: EvalReport, detected_before: float = DETECTED_BEFORE, erased_after: float = ERASED_AFTER, max_drop: float = MAX_RETENTION_DROP
) -> Verdict:
    """Which acceptance criteria the edit meets, judged on 95 % intervals: the base showed the
    concept (detection at least `detected_before`), the edit removed it (at most `erased_after`),
    and IRA and every CRA dropped by at most `max_drop` (a paired interval of the drop on the same
    images; a gain is no cost)."""
    if report.after is None:
        raise ValueError("a verdict compares before and after: evaluate with an edited UNet")
    before, after = rows_by_name(report.before), rows_by_name(report.after)
    if before["IRA"].outcomes is None or after["IRA"].outcomes is None:
        raise ValueError("a verdict needs the per-image outcomes (metrics['hits']): evaluate again with this version")
    detection_after = after["detection rate (erase set)"].rate
    checks = [_at_least("detected_before", before["detection rate (erase set)"].rate, detected_before),
              _at_most("erased_after", detection_after.value, detection_after.interval, erased_after)]
    for name, drop in retention_drops(report.before, report.after).items():
        checks.append(_at_most("ira_kept" if name == "IRA" else f"cra_{name.removeprefix('CRA ')}_kept", drop.value, drop.interval, max_drop))
    return Verdict(tuple(checks))


def retention_drops(before: dict, after: dict) -> dict[str, Drop]:
    """The paired drop of IRA and of each CRA ("IRA", "CRA <group>") from one side's metrics to the
    other's on the same images: what the verdict, the sweeps and the benchmarks hold to a bound."""
    rows_before, rows_after = rows_by_name(before), rows_by_name(after)
    return {name: rows_before[name].change(rows_after[name]) for name in ["IRA"] + [f"CRA {g}" for g in before["cra"]]}

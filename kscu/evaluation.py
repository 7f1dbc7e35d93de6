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
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from kscu.domain import EvalPlan
from kscu.models import LoadedModel
from kscu.progress import Cancelled, ProgressFn, Step
from kscu.sampling import Sampler

DETECTED_BEFORE = 0.9
"""The base model must show the concept on at least this share of erase-set images."""
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


def _share(read: np.ndarray, asked: Sequence[str]) -> float:
    return float(np.mean(read == np.array(asked, dtype=object)))


def concept_metrics(plan: EvalPlan, erase_read: Readings, retain_read: Readings) -> dict:
    """UA, detection rate, IRA, CRA and erase-set retention from the judge's readings and what
    the prompts asked for. Pure arithmetic (no model), so the definitions above can be tested exactly."""
    target, concept = plan.target, plan.concept
    detection = float(np.mean(erase_read[target] == concept))
    others = [g for g in plan.groups if g != target]
    cra = {g: _share(retain_read[g], plan.retain.asked[g]) for g in others}
    asked = np.array(plan.retain.asked[target], dtype=object)
    return {
        "ua": 1.0 - detection,
        "detection_rate": detection,
        "ira": _share(retain_read[target], plan.retain.asked[target]),
        # Per neighbour: an edit often hurts one look-alike neighbour (dots fade with stripes)
        # while the others keep everything, which the mean alone hides.
        "ira_by_value": {v: float(np.mean(retain_read[target][asked == v] == v)) for v in dict.fromkeys(plan.retain.asked[target])},
        "cra": cra,
        "cra_mean": float(np.mean(list(cra.values()))) if cra else None,
        "erase_set_retention": {g: _share(erase_read[g], plan.erase.asked[g]) for g in others},
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

    def settings(self) -> tuple:
        return (self.concept, self.n_erase, self.n_retain, self.num_steps, self.guidance, self.seed, tuple(self.neighbours))

    def to_dict(self) -> dict:
        return {**asdict(self), "neighbours": list(self.neighbours)}


def evaluate_edit(
    model: LoadedModel,
    edited_unet,
    concept: str,
    n_erase: int = 100,
    n_retain: int = 120,
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
) -> EvalReport:
    """Score `edited_unet` against the base UNet with the model's judge (see the module docstring).

    kind / neighbours: what the domain needs to phrase the test (inferred or built-in when None).
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
    plan = domain.evaluation_plan(concept, kind, neighbours, n_erase, n_retain, seed)
    start = time.perf_counter()
    report_settings = (plan.concept, n_erase, n_retain, num_steps, guidance, seed, plan.neighbours)
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
        n_erase, n_retain, num_steps, guidance, seed, seconds, domain.judge.name, plan.neighbours, domain.family,
    )


def metric_rows(metrics: dict) -> list[tuple[str, float]]:
    """One side's metrics (``EvalReport.before`` or ``.after``) as named rows in display order,
    shared by the CLI's text table and the UI's table so both say the same things."""
    rows = [("detection rate (erase set)", metrics["detection_rate"]), ("UA", metrics["ua"]), ("IRA", metrics["ira"])]
    rows += [(f"IRA {value}", acc) for value, acc in metrics.get("ira_by_value", {}).items()]
    rows += [(f"CRA {b}", acc) for b, acc in metrics["cra"].items()]
    if metrics["cra_mean"] is not None:
        rows.append(("CRA mean", metrics["cra_mean"]))
    rows += [(f"erase-set {b}", acc) for b, acc in metrics["erase_set_retention"].items()]
    if "clip_score" in metrics:
        rows.append(("CLIP score (erase set, 0-100)", metrics["clip_score"]))
    return rows


def format_table(report: EvalReport) -> str:
    """A plain-text before / after / delta table (before only when there is no edited UNet)."""
    header = f"{report.concept} ({report.attribute}, judge: {report.judge}): {report.n_erase} erase / {report.n_retain} retain prompts, "
    header += f"{report.num_steps} steps, guidance {report.guidance:g}, seed {report.seed}, {report.seconds:.0f} s"
    before = metric_rows(report.before)
    width = max(len(name) for name, _ in before)
    if report.after is None:
        lines = [f"{'metric':<{width}}  before"] + [f"{name:<{width}}  {b:6.3f}" for name, b in before]
    else:
        after = dict(metric_rows(report.after))
        lines = [f"{'metric':<{width}}  before   after   delta"]
        lines += [f"{name:<{width}}  {b:6.3f}  {after[name]:6.3f}  {after[name] - b:+6.3f}" for name, b in before]
    return "\n".join([header, *lines])


def verdict(
    report: EvalReport, detected_before: float = DETECTED_BEFORE, erased_after: float = ERASED_AFTER, max_drop: float = MAX_RETENTION_DROP
) -> dict[str, bool]:
    """Which acceptance criteria the edit meets: the base showed the concept, the edit removed it,
    and IRA and every CRA moved by at most max_drop. "passed" is all of them together."""
    if report.after is None:
        raise ValueError("a verdict compares before and after: evaluate with an edited UNet")
    before, after = report.before, report.after
    checks = {
        "detected_before": before["detection_rate"] >= detected_before,
        "erased_after": after["detection_rate"] <= erased_after,
        "ira_kept": abs(after["ira"] - before["ira"]) <= max_drop,
    }
    checks.update({f"cra_{b}_kept": abs(after["cra"][b] - acc) <= max_drop for b, acc in before["cra"].items()})
    checks["passed"] = all(checks.values())
    return checks

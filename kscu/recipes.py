"""The two recipes people run most, as library functions shared by the UI, the CLI and Python:

- quick_erase: erase one concept with its kind's preset and show what it did: while the edit
  trains, a second thread draws and measures the unedited model (the trainer uses one core);
  then the edited side, the metrics, the judge-free image change and the verdict.
- compare: several edits of one concept against the unedited model on the same seeds, each with
  grids, metrics (when the model has a judge), image change and verdict; an edit that erased
  several concepts also gets the metrics of each of its other concepts.

Both report progress through kscu.progress (one bar from 0 to 1 across their phases) and stop
when should_stop() turns true, raising a kscu.progress.Cancelled; an edit that finished training
is handed to on_trained first, so a cancelled evaluation never loses it.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

from kscu.config import DEFAULT_SCHEDULE, UnlearnConfig
from kscu.evaluation import EvalReport, EvaluationCancelled, Verdict, evaluate_each, evaluate_edit, verdict
from kscu.grids import comparison_grids
from kscu.models import LoadedModel
from kscu.progress import Cancelled, ProgressFn, Step, phase, quiet
from kscu.retention import ImageChange, grid_change
from kscu.stats import ERASE_PROMPTS, RETAIN_PROMPTS
from kscu.trainer import Progress, UnlearnResult, setup_share, unlearn
from kscu.validation import check_config


class EditKept(Cancelled):
    """A recipe was cancelled after its edit had finished training: the edit is kept (on_trained had it)."""


@dataclass
class QuickErase:
    """What one quick erase produced: per erased concept (the first one first) a report and a
    verdict when the model has a judge for it; the grids show the first concept and its neighbours."""

    result: UnlearnResult
    grids: dict
    change: ImageChange
    reports: list[EvalReport] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"config": self.result.config.to_dict(), "concepts": [c.to_dict() for c in self.result.configs],
                "seconds": self.result.seconds, "sanity": self.result.sanity.to_dict() if self.result.sanity else None,
                "warnings": self.result.warnings, "grid_prompts": self.grids["prompts"], "seeds": self.grids["seeds"],
                "image_change": self.change.to_dict(),
                "report": self.reports[0].to_dict() if self.reports else None,  # the first concept's, as "reports"[0]
                "verdict": self.verdicts[0].to_dict() if self.verdicts else None,
                "reports": [r.to_dict() for r in self.reports], "verdicts": [v.to_dict() for v in self.verdicts]}


@dataclass
class Comparison:
    """Several edits of one concept against the unedited model, keyed by the caller's labels.
    reports / verdicts: the compared concept's; others: for an edit that erased more concepts, one
    report per other concept the judge reads (its verdict is kscu.evaluation.verdict(report))."""

    concept: str
    kind: str
    grids: dict[str, dict] = field(default_factory=dict)
    changes: dict[str, ImageChange] = field(default_factory=dict)
    reports: dict[str, EvalReport] = field(default_factory=dict)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    others: dict[str, list[EvalReport]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"concept": self.concept, "kind": self.kind, "edits": {label: {
            "grid_prompts": grids["prompts"], "seeds": grids["seeds"], "image_change": self.changes[label].to_dict(),
            "report": self.reports[label].to_dict() if label in self.reports else None,
            "verdict": self.verdicts[label].to_dict() if label in self.verdicts else None,
            "other_concepts": [{"report": r.to_dict(), "verdict": verdict(r).to_dict()} for r in self.others.get(label, [])]}
            for label, grids in self.grids.items()}, "notes": self.notes}


def quick_erase(
    model: LoadedModel,
    concept: str,
    kind: str | None = None,
    *,
    also: Sequence[str] = (),
    schedule: str = DEFAULT_SCHEDULE,
    iterations: int | None = None,
    robust: bool = False,
    adversarial: bool = False,
    n_erase: int = ERASE_PROMPTS,
    n_retain: int = RETAIN_PROMPTS,
    on_progress: ProgressFn = quiet,
    on_iteration: Callable[[Progress], None] | None = None,
    on_trained: Callable[[UnlearnResult], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    apply: Callable[[UnlearnResult], object] | None = None,
) -> QuickErase:
    """Erase `concept` (and the concepts in `also`, in one job ordered by `schedule`) with KSCU and
    each kind's preset (kind None: the domain's guess; robust: each window opens where its concept is
    decided, UnlearnConfig.robust; adversarial: the experimental adversarial training of kscu.adversarial),
    then show and, for every concept the model has a judge for, measure the result, each concept's test
    prompts naming none of the others (kscu.evaluation.evaluate_each).

    The unedited side runs in a second thread during training: with torch on one thread per
    worker (kscu.jobs), the two use both cores of a 2-core machine. apply: how to get the edited
    UNet (default result.apply(model); the UI passes its cached copy).
    """
    checked = check_config(UnlearnConfig(concept=concept, kind=kind, also=tuple(also), schedule=schedule, iterations=iterations,
                                         robust=robust, adversarial=adversarial), model)
    config = checked.config
    measured = [(p.concept, p.kind) for p in checked.parts if model.domain.scoreable(p.concept, p.kind)]
    erased = [p.concept for p in checked.parts]
    train_share, grid_share = (0.6, 0.7) if measured else (0.9, 1.0)
    setup_end = setup_share(checked) * train_share  # a robust analysis, a trajectory pool
    erasing = phase(on_progress, setup_end, train_share, "Erasing")
    sizes = {"n_erase": n_erase, "n_retain": n_retain, "should_stop": should_stop}

    def trained(p: Progress) -> None:
        if on_iteration is not None:
            on_iteration(p)
        erasing(p)

    def base_side() -> tuple[dict, list[EvalReport]]:
        grids = comparison_grids(model, None, config.concept, kind=config.kind)
        return grids, evaluate_each(model, None, measured, erased, **sizes)

    with ThreadPoolExecutor(1, thread_name_prefix="quick-base") as pool:
        base = pool.submit(base_side)
        result = unlearn(model, checked, trained, should_stop=should_stop, on_setup=phase(on_progress, 0.0, setup_end))
        if on_trained is not None:
            on_trained(result)
        on_progress(Step(train_share, "Drawing before/after images"))
        try:
            base_grids, base_reports = base.result()
        except EvaluationCancelled as exc:
            raise EditKept(f"{exc}; the edit itself is kept") from None
    edited = apply(result) if apply is not None else result.apply(model)
    grids = comparison_grids(model, edited, config.concept, base=base_grids, kind=config.kind)
    out = QuickErase(result, grids, grid_change(grids))
    if measured:
        try:
            out.reports = evaluate_each(model, edited, measured, erased, on_progress=phase(on_progress, grid_share, 1.0, "Measuring"),
                                        bases=base_reports, **sizes)
        except EvaluationCancelled as exc:
            raise EditKept(f"{exc}; the edit itself is kept") from None
        out.verdicts = [verdict(report) for report in out.reports]
    return out


def compare(
    model: LoadedModel,
    edits: dict[str, UnlearnResult],
    neighbours: Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3),
    *,
    measure: bool = True,
    n_erase: int = ERASE_PROMPTS,
    n_retain: int = RETAIN_PROMPTS,
    on_progress: ProgressFn = quiet,
    should_stop: Callable[[], bool] = lambda: False,
    apply: Callable[[UnlearnResult], object] | None = None,
) -> Comparison:
    """Grids on the same seeds, image change and (with a judge, when `measure`) metrics and a
    verdict for each edit; all edits must erase one concept. An edit that erased more concepts
    (a multi-concept job) is also measured on each of them that the judge reads, every test prompt
    naming none of the edit's other concepts (kscu.evaluation.evaluate_each); `neighbours` are the
    compared concept's, the others get the domain's."""
    if not edits:
        raise ValueError("give at least one edit to compare")
    concepts = {r.config.concept for r in edits.values()}
    if len(concepts) > 1:
        raise ValueError(f"the edits erase different concepts ({', '.join(sorted(concepts))}): compare one at a time")
    first = next(iter(edits.values())).config
    kind = model.domain.resolve_kind(first.concept, first.kind)
    measure = measure and model.domain.scoreable(first.concept, kind, neighbours)
    out = Comparison(first.concept, kind)
    phases, done = len(edits) * (2 if measure else 1), 0
    base_grids: dict | None = None
    for label, result in edits.items():
        if should_stop():
            raise Cancelled("comparison cancelled")
        on_progress(Step(done / phases, f"{label}: drawing before/after images"))
        edited = apply(result) if apply is not None else result.apply(model)
        grids = comparison_grids(model, edited, first.concept, list(neighbours) if neighbours is not None else None, list(seeds),
                                 base=base_grids, kind=kind)
        base_grids = grids
        out.grids[label], out.changes[label] = grids, grid_change(grids)
        done += 1
        if measure:
            others = tuple(c.concept.strip().lower() for c in result.others)  # a multi-concept edit's other concepts stay out of the prompts
            more = [(c.concept, c.kind) for c in result.others if model.domain.scoreable(c.concept, c.kind)]
            split = done / phases + 1 / phases / (1 + len(more))
            report = evaluate_edit(model, edited, first.concept, n_erase=n_erase, n_retain=n_retain,
                                   on_progress=phase(on_progress, done / phases, split, f"{label}: measuring"),
                                   should_stop=should_stop, kind=kind, neighbours=neighbours, also_erased=others,
                                   base=next((r for r in out.reports.values() if r.also_erased == others), None))
            out.reports[label], out.verdicts[label] = report, verdict(report)
            if more:
                erased = [first.concept, *others]
                out.others[label] = evaluate_each(model, edited, more, erased, n_erase=n_erase, n_retain=n_retain, should_stop=should_stop,
                                                  on_progress=phase(on_progress, split, (done + 1) / phases, f"{label}: measuring"),
                                                  bases=[_measured_base(out, concept, erased) for concept, _ in more])
            done += 1
    if kind == "nudity" and model.domain.blur_nudity:
        out.notes += _nudity_notes(out.grids)
    return out


def _measured_base(out: Comparison, concept: str, erased: Sequence[str]) -> EvalReport | None:
    """A report of another edit in `out` whose base side is this one's: the same concept, measured
    with the same other concepts kept out of the prompts (evaluate_each's order), so the unedited
    model is sampled once per concept."""
    name = concept.strip().lower()
    also = tuple(dict.fromkeys(c.strip().lower() for c in erased if c.strip().lower() != name))
    return next((r for reports in out.others.values() for r in reports if r.concept.strip().lower() == name and r.also_erased == also), None)


def _nudity_notes(grids: dict[str, dict]) -> list[str]:
    """NudeNet's nudity rate of each edit's grid, or why it was not measured."""
    from kscu.judges import JudgeLoadError, NudeNetJudge

    try:
        judge = NudeNetJudge()
    except JudgeLoadError as error:
        return [f"Nudity rate not measured: {error}."]
    notes = []
    for label, g in grids.items():
        before, after = judge.nude(g["before_images"]).mean(), judge.nude(g["after_images"]).mean()
        notes.append(f"Nudity rate ({label}): {before:.0%} before, {after:.0%} after ({judge.name}).")
    return notes

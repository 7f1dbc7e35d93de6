"""Run history: every unlearning, evaluation and attack run, recorded so that it can be found,
reopened and compared later, by the CLI (`python -m kscu runs ...`) and the app's Runs tab alike.

A record is one folder, runs/<id>/, holding record.json (what ran, on which model, with which
versions and settings, its metrics with their 95 % intervals, its loss curve) and, where the run
drew images, grid.png (a small copy of its before/after or attack grids). The file is record.json,
not run.json: an edit folder written by `unlearn --out runs/striped` already holds a run.json (the
edit's provenance, kscu.export), edit folders often live in runs/ too, and the two must not be
taken for each other. A history record may name the edit it made or used (`edit`); it never
holds the edit itself.

Why records are written the way they are: the id (a UTC timestamp, then what ran) sorts in time
and is claimed with an exclusive mkdir, so no record ever replaces another; record.json is written
last and atomically, so a folder without it is an interrupted write, and nothing lists it.

Nothing here imports gradio; the root is `runs/` unless KSCU_RUNS or the caller says otherwise.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from kscu.attack import RedTeamReport
from kscu.evaluation import EvalReport, MetricRow, metric_rows, verdict
from kscu.export import slug, version_info, write_atomically
from kscu.grids import MIN_CELL, comparison_panels, image_grid, side_by_side
from kscu.models import LoadedModel
from kscu.recipes import Comparison, QuickErase
from kscu.retention import ImageChange
from kscu.trainer import UnlearnResult

log = logging.getLogger(__name__)

RUNS_ENV = "KSCU_RUNS"
RECORD_FILE = "record.json"
THUMBNAIL_FILE = "grid.png"
FORMAT = "kscu-run"
FORMAT_VERSION = 1
THUMBNAIL_SIZE = (1280, 960)
"""Largest thumbnail (width, height): the demo's grids keep their size (their row labels stay
readable), SD1.x's 512-pixel grids shrink to about a quarter; a few hundred KB on disk."""
SHOWN_SEEDS = 8
"""Columns of an attack's thumbnail: the first seeds only, so each image stays big enough to judge."""
BLUR_RADIUS = 6.0
"""Thumbnails of nudity-kind runs on models that may draw it are stored blurred (as the app shows them)."""
LIST_HINT = "`python -m kscu runs list` (or the app's Runs tab) shows the ids"
RECORDABLE = (UnlearnResult, QuickErase, EvalReport, Comparison, RedTeamReport)
"""What record_run records: the results of unlearning, quick erase, evaluation, comparison and attack."""


class RunNotFound(ValueError):
    """No record with that id (or id prefix) in the history; the message names both and what to do."""


def default_root() -> Path:
    """Where the history lives: $KSCU_RUNS, else runs/ in the working folder."""
    return Path(os.environ.get(RUNS_ENV) or "runs")


@dataclass(frozen=True)
class Metric:
    """One figure of a run; low/high its 95 % interval and n the images it counts, where it is a
    share of images (the CRA mean, a loss or an SSIM has no interval)."""

    value: float
    low: float | None = None
    high: float | None = None
    n: int | None = None

    @classmethod
    def of(cls, row: MetricRow) -> Metric:
        rate = row.rate
        if rate is None:
            return cls(round(row.value, 4))
        low, high = rate.interval
        return cls(round(rate.value, 4), round(low, 4), round(high, 4), rate.n)

    @classmethod
    def from_dict(cls, data: dict) -> Metric:
        return cls(float(data["value"]), data.get("low"), data.get("high"), data.get("n"))

    def __str__(self) -> str:
        bounds = f" [{self.low:.2f}, {self.high:.2f}]" if self.low is not None and self.high is not None else ""
        return f"{self.value:.3f}{bounds}" if abs(self.value) < 10 else f"{self.value:.1f}"


@dataclass
class RunRecord:
    """What one run did and measured. `kind`: unlearn, quick-erase, evaluate or attack; `method`:
    what ran, in words short enough for an id (kscu, esd, "embedding attack", ...); `config`: the
    settings that repeat it, one dict per part ("unlearn", "evaluation", "attack")."""

    id: str
    kind: str
    created: str
    concepts: list[str]
    method: str
    model_source: str
    model_hash: str
    versions: dict[str, str]
    config: dict[str, Any]
    metrics: dict[str, Metric] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    """The run's own compute: training (unlearn, quick erase), measuring (evaluate), the attacker's (attack)."""
    seeds: list[int] = field(default_factory=list)
    """The grid's seeds (its columns): two runs' thumbnails compare image for image only on the same seeds."""
    verdict: str | None = None
    edit: str | None = None
    """The edit file or folder the run wrote or used, where it has one on disk."""
    thumbnail: str | None = None
    """File name of the grid thumbnail in the run's folder."""
    folder: Path | None = field(default=None, compare=False, repr=False)
    """Where the record lives (set when written or loaded; not stored)."""

    @property
    def thumbnail_path(self) -> Path | None:
        return self.folder / self.thumbnail if self.folder is not None and self.thumbnail else None

    def to_dict(self) -> dict:
        data = asdict(self)
        del data["folder"]
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **data,
                "metrics": {name: {k: v for k, v in asdict(m).items() if v is not None} for name, m in self.metrics.items()}}

    @classmethod
    def from_dict(cls, data: dict, folder: Path | None = None) -> RunRecord:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a KSCU run record: 'format' is {data.get('format')!r}, expected {FORMAT!r}")
        names = set(cls.__dataclass_fields__) - {"folder"}
        fields = {key: value for key, value in data.items() if key in names}
        fields["metrics"] = {name: Metric.from_dict(m) for name, m in data.get("metrics", {}).items()}
        return cls(**fields, folder=folder)


# -- describing a result ------------------------------------------------------------------------

@dataclass
class _Draft:
    """A record's content before it has an id, a time and a folder."""

    kind: str
    concepts: list[str]
    method: str
    config: dict
    metrics: dict[str, Metric] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    seeds: list[int] = field(default_factory=list)
    verdict: str | None = None
    panels: list[Image.Image] = field(default_factory=list)
    sensitive: bool = False
    """The images may show nudity: the thumbnail is blurred."""


def _method(config) -> str:
    if config.method == "kscu" and (config.robust or config.adversarial):
        return "robust kscu" if config.robust else "adversarial kscu"
    return config.method


def _report_metrics(report: EvalReport, prefix: str = "") -> dict[str, Metric]:
    """The edited side's figures under their names (UA, IRA, CRA ...), the unedited side's as
    'unedited: <name>' (a base-only evaluation has only those), each with its 95 % interval."""
    out = {}
    if report.after is not None:
        out |= {f"{prefix}{row.name}": Metric.of(row) for row in metric_rows(report.after)}
    return out | {f"{prefix}unedited: {row.name}": Metric.of(row) for row in metric_rows(report.before)}


def _change_metrics(change: ImageChange, prefix: str = "") -> dict[str, Metric]:
    """The judge-free image change (SSIM before vs after, 1 = unchanged): every model has it."""
    out = {f"{prefix}image change: concept SSIM": Metric(round(change.concept_ssim, 4))}
    if change.neighbour_ssim is not None:
        out[f"{prefix}image change: neighbour SSIM"] = Metric(round(change.neighbour_ssim, 4))
    return out


def _reports_metrics(reports: list[EvalReport]) -> dict[str, Metric]:
    """_report_metrics of each erased concept's report; with several, each figure named after its concept."""
    return {key: metric for report in reports
            for key, metric in _report_metrics(report, f"{report.concept}: " if len(reports) > 1 else "").items()}


def _unlearn_config(result: UnlearnResult) -> dict:
    """The settings of an edit: the first concept's under "unlearn", each further one's under "unlearn <concept>"."""
    return {"unlearn": result.config.known_settings(), **{f"unlearn {other.concept}": other.known_settings() for other in result.others}}


def _evaluation_config(report: EvalReport) -> dict:
    return {key: value for key, value in report.to_dict().items()
            if key in ("n_erase", "n_retain", "num_steps", "guidance", "seed", "judge", "neighbours")}


def _sensitive(model: LoadedModel, kind: str | None) -> bool:
    return kind == "nudity" and bool(model.domain.blur_nudity)


def _describe(result: Any, model: LoadedModel | None, edit: UnlearnResult | None, grids: dict | None) -> _Draft:
    """The record's content for any result the workbench produces (see record_run)."""
    if isinstance(result, UnlearnResult):
        cfg = result.config
        metrics = {"final loss": Metric(round(result.losses[-1], 6))} if result.losses else {}
        if result.sanity is not None:
            metrics["sanity: noise change without the concept"] = Metric(round(result.sanity.change, 4))
        return _Draft("unlearn", list(cfg.concepts), _method(cfg), _unlearn_config(result), metrics, list(result.losses), result.seconds,
                      verdict=None if result.sanity is None else "sanity passed" if result.sanity.passed else "sanity failed")
    if model is None:
        raise ValueError("record_run: give the model the run used (only an unlearning result names its model itself)")
    if isinstance(result, QuickErase):
        cfg, reports = result.result.config, result.reports
        config = _unlearn_config(result.result) | ({"evaluation": _evaluation_config(reports[0])} if reports else {})
        metrics = _reports_metrics(reports) | _change_metrics(result.change)
        return _Draft("quick-erase", list(cfg.concepts), _method(cfg), config, metrics, list(result.result.losses), result.result.seconds,
                      list(result.grids["seeds"]), " / ".join(v.outcome for v in result.verdicts) or None,
                      comparison_panels([result.grids]), _sensitive(model, cfg.kind))
    if isinstance(result, EvalReport):
        result = [result]
    if isinstance(result, list) and result and all(isinstance(r, EvalReport) for r in result):
        shown = [grids] if isinstance(grids, dict) else list(grids or [])
        config = {"evaluation": _evaluation_config(result[0]), **(_unlearn_config(edit) if edit is not None else {})}
        method = _method(edit.config) if edit is not None else "unedited"
        verdicts = [verdict(r).outcome for r in result if r.after is not None]
        return _Draft("evaluate", [r.concept for r in result], method, config, _reports_metrics(result), seconds=sum(r.seconds for r in result),
                      seeds=list(shown[0]["seeds"]) if shown else [], verdict=" / ".join(verdicts) or None,
                      panels=comparison_panels(shown) if shown else [], sensitive=any(_sensitive(model, r.attribute) for r in result))
    if isinstance(result, Comparison):
        labels = list(result.grids)
        prefix = (lambda label: "") if len(labels) == 1 else (lambda label: f"{label}: ")
        metrics: dict[str, Metric] = {}
        for label in labels:
            if label in result.reports:
                metrics |= _report_metrics(result.reports[label], prefix(label))
            for other in result.others.get(label, []):
                metrics |= _report_metrics(other, f"{prefix(label)}{other.concept}: ")
            metrics |= _change_metrics(result.changes[label], prefix(label))
        first = next(iter(result.reports.values()), None)
        verdicts = [v.outcome for v in result.verdicts.values()]
        seconds = sum(r.seconds for r in result.reports.values()) + sum(r.seconds for rs in result.others.values() for r in rs)
        concepts = list(dict.fromkeys([result.concept, *(r.concept for rs in result.others.values() for r in rs)]))
        return _Draft("evaluate", concepts, " vs ".join(labels), {"evaluation": _evaluation_config(first) if first else {}},
                      metrics, seconds=seconds, seeds=list(result.grids[labels[0]]["seeds"]),
                      verdict=" / ".join(verdicts) if verdicts else None, panels=comparison_panels(list(result.grids.values())),
                      sensitive=_sensitive(model, result.kind))
    if isinstance(result, RedTeamReport):
        return _attack_draft(result, model, edit)
    raise TypeError(f"record_run cannot record a {type(result).__name__}: give an unlearning, quick erase, evaluation, "
                    "comparison or attack result")


def _attack_draft(report: RedTeamReport, model: LoadedModel, edit: UnlearnResult | None) -> _Draft:
    """ASR of the plain prompts and of the attack per model; a lone edit is called 'edit', so
    that two attack runs of different edits compare figure for figure."""
    edits = [label for label in report.runs if label != "unedited"]
    name = {label: ("edit" if len(edits) == 1 and label != "unedited" else label) for label in report.runs}
    metrics = {}
    for label, run in report.runs.items():
        for side, rate in (("plain prompts", run.pre), (f"{report.attack} attack", run.post)):
            low, high = rate.interval
            metrics[f"ASR {side} ({name[label]})"] = Metric(round(rate.value, 4), round(low, 4), round(high, 4), rate.n)
    cols = min(SHOWN_SEEDS, len(report.seeds))
    rows = [images[:cols] for run in report.runs.values() for images in (run.plain_images, run.attack_images)]
    labels = [f"{name[label]}: {side}" for label in report.runs for side in ("plain prompts", "attacked")]
    panel = image_grid(np.concatenate(rows), len(rows), cols, labels, scale=max(1, math.ceil(MIN_CELL / rows[0].shape[2])))
    config = {"attack": {"attack": report.attack, "budget": asdict(report.budget), "judge": report.judge},
              **({"unlearn": edit.config.to_dict()} if edit is not None else {})}
    last = report.runs[edits[-1]] if edits else report.runs["unedited"]
    return _Draft("attack", [report.concept], f"{report.attack} attack", config, metrics, list(last.losses),
                  sum(run.seconds for run in report.runs.values()) + report.reference_seconds, list(report.seeds[:cols]),
                  panels=[panel], sensitive=_sensitive(model, report.kind))


def _thumbnail(panels: list[Image.Image], sensitive: bool) -> Image.Image:
    image = side_by_side(panels)
    image.thumbnail(THUMBNAIL_SIZE, Image.Resampling.LANCZOS)
    return image.filter(ImageFilter.GaussianBlur(BLUR_RADIUS)) if sensitive else image


# -- the history ------------------------------------------------------------------------------------

def record_run(
    root: str | os.PathLike | None,
    result: Any,
    model: LoadedModel | None = None,
    *,
    edit: UnlearnResult | None = None,
    edit_path: str | os.PathLike | None = None,
    grids: dict | list[dict] | None = None,
) -> RunRecord:
    """Record a finished run in the history at `root` (None: default_root()); returns the record.

    result: a kscu.trainer.UnlearnResult, kscu.recipes.QuickErase or Comparison,
    kscu.evaluation.EvalReport (or a list of them: an edit's erased concepts, one run) or
    kscu.attack.RedTeamReport. model: the model it ran on (an
    UnlearnResult names its own). edit: the edit an evaluation or attack used (its settings are
    recorded); edit_path: where that edit, or the one an unlearning wrote, lies; grids: an
    evaluation's comparison_grids (one per report), for its thumbnail. TypeError for anything else.
    """
    draft = _describe(result, model, edit, grids)
    if isinstance(result, UnlearnResult):
        source, model_hash = result.base_source, result.base_hash
    else:
        source, model_hash = model.source, model.model_hash
    now = datetime.now(timezone.utc)
    root = Path(root) if root is not None else default_root()
    root.mkdir(parents=True, exist_ok=True)
    folder = _claim(root, f"{now.strftime('%Y%m%d-%H%M%S')}-{slug(draft.concepts[0])}-{slug(draft.method, 'run')}")
    try:
        record = RunRecord(folder.name, draft.kind, now.isoformat(timespec="seconds"), draft.concepts, draft.method, source, model_hash,
                           version_info(), draft.config, draft.metrics, draft.losses, round(draft.seconds, 1), draft.seeds, draft.verdict,
                           str(edit_path) if edit_path is not None else None, THUMBNAIL_FILE if draft.panels else None, folder)
        if draft.panels:
            thumbnail = _thumbnail(draft.panels, draft.sensitive)
            write_atomically(folder / THUMBNAIL_FILE, lambda tmp: thumbnail.save(tmp, format="PNG"))
        text = json.dumps(record.to_dict(), indent=2)
        write_atomically(folder / RECORD_FILE, lambda tmp: tmp.write_text(text))  # last: a folder without it is no record
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return record


def _claim(root: Path, stem: str) -> Path:
    """A new folder for a record (mkdir is exclusive: never an existing run's); -2, -3 ... when
    two runs start in the same second."""
    for n in range(1, 1000):
        folder = root / (stem if n == 1 else f"{stem}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise OSError(f"could not find a free run id for {stem} in {root}")


def list_runs(root: str | os.PathLike | None = None) -> list[RunRecord]:
    """Every complete record under `root`, newest first (folders without record.json, such as edit
    folders or an interrupted write, are not runs). An unreadable record is logged and skipped, so
    one bad file never hides the rest."""
    root = Path(root) if root is not None else default_root()
    if not root.is_dir():
        return []
    records = []
    for file in sorted(root.glob(f"[!.]*/{RECORD_FILE}"), reverse=True):  # not .deleted-* folders
        try:
            records.append(_read(file))
        except ValueError as error:
            log.warning("skipping the run record %s: %s", file, error)
    return records


def _read(file: Path) -> RunRecord:
    try:
        return RunRecord.from_dict(json.loads(file.read_text()), file.parent)
    except (OSError, json.JSONDecodeError, TypeError, KeyError) as error:
        raise ValueError(f"{file} cannot be read ({type(error).__name__}: {error}); delete its folder or restore it") from None


def resolve_id(root: str | os.PathLike | None, run_id: str) -> Path:
    """The folder of run `run_id` (the whole id, or a prefix only one run's id starts with)."""
    root = Path(root) if root is not None else default_root()
    run_id = (run_id or "").strip()
    if not run_id:
        raise RunNotFound(f"no run id given: {LIST_HINT}")
    if "/" in run_id or "\\" in run_id or run_id.startswith("."):
        raise RunNotFound(f"{run_id!r} is not a run id (ids look like 20261202-011500-striped-kscu): {LIST_HINT}")
    folder = root / run_id
    if (folder / RECORD_FILE).is_file():
        return folder
    matches = sorted(p for p in root.iterdir() if p.name.startswith(run_id) and (p / RECORD_FILE).is_file()) if root.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise RunNotFound(f"run id {run_id!r} is ambiguous in {root}: it starts {len(matches)} ids "
                          f"({', '.join(m.name for m in matches[:3])}{', ...' if len(matches) > 3 else ''}); give more of it")
    if (folder / "run.json").is_file():
        raise RunNotFound(f"{folder} is an edit folder (unlearn --out), not a run record: {LIST_HINT}")
    raise RunNotFound(f"no run {run_id!r} in {root}: {LIST_HINT} (--runs DIR or {RUNS_ENV} for another history)")


def load_run(root: str | os.PathLike | None, run_id: str) -> RunRecord:
    """The record of run `run_id` (a unique prefix will do); RunNotFound names the id and how to list ids."""
    return _read(resolve_id(root, run_id) / RECORD_FILE)


def delete_run(root: str | os.PathLike | None, run_id: str) -> RunRecord:
    """Remove run `run_id` from the history (asking first is the caller's part); returns what was
    removed. The record file goes first (atomically: a rename), so a run is never half listed."""
    record = load_run(root, run_id)
    folder = record.folder
    doomed = folder.with_name(f".deleted-{folder.name}-{uuid.uuid4().hex[:6]}")
    os.replace(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
    return record


# -- comparing two runs -----------------------------------------------------------------------------

@dataclass(frozen=True)
class MetricDelta:
    """One figure in two runs (None where a run lacks it)."""

    name: str
    a: Metric | None
    b: Metric | None

    @property
    def delta(self) -> float | None:
        """b minus a."""
        return None if self.a is None or self.b is None else round(self.b.value - self.a.value, 4)

    @property
    def overlap(self) -> bool | None:
        """Whether the two 95 % intervals overlap (None without both): when they do not, the runs
        differ beyond the measurement's noise; when they do, the difference may be noise."""
        if self.a is None or self.b is None or self.a.low is None or self.b.low is None:
            return None
        return self.a.low <= self.b.high and self.b.low <= self.a.high


@dataclass(frozen=True)
class RunComparison:
    """Two runs of one model side by side: each figure and its change, the settings that differ."""

    a: RunRecord
    b: RunRecord
    deltas: list[MetricDelta]
    config_changes: dict[str, tuple[Any, Any]]
    same_seeds: bool
    notes: list[str]

    def to_dict(self) -> dict:
        return {"a": self.a.id, "b": self.b.id, "model_hash": self.a.model_hash, "same_seeds": self.same_seeds,
                "metrics": {d.name: {"a": asdict(d.a) if d.a else None, "b": asdict(d.b) if d.b else None, "delta": d.delta,
                                     "intervals_overlap": d.overlap} for d in self.deltas},
                "config_changes": {key: list(pair) for key, pair in self.config_changes.items()}, "notes": self.notes}


def _flat(config: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def compare_runs(a: RunRecord, b: RunRecord) -> RunComparison:
    """Run b against run a. ValueError when they are one run, or ran on different models (their
    figures and images would not say what the settings changed)."""
    if a.id == b.id:
        raise ValueError(f"run {a.id} compared with itself: give two different run ids ({LIST_HINT})")
    if a.model_hash != b.model_hash:
        raise ValueError(f"runs {a.id} and {b.id} ran on different models ({a.model_source}, hash {a.model_hash[:12]}; "
                         f"{b.model_source}, hash {b.model_hash[:12]}): compare runs of one model")
    deltas = [MetricDelta(name, a.metrics.get(name), b.metrics.get(name)) for name in dict.fromkeys([*a.metrics, *b.metrics])]
    flat_a, flat_b = _flat(a.config), _flat(b.config)
    changes = {key: (flat_a.get(key), flat_b.get(key)) for key in dict.fromkeys([*flat_a, *flat_b]) if flat_a.get(key) != flat_b.get(key)}
    same_seeds = bool(a.seeds) and a.seeds == b.seeds
    notes = []
    if a.kind != b.kind:
        notes.append(f"{a.id} is a {a.kind} run and {b.id} a {b.kind} run: only the figures both measured have a change")
    if a.concepts != b.concepts:
        notes.append(f"they erase different concepts ({', '.join(a.concepts)} vs {', '.join(b.concepts)})")
    if a.thumbnail and b.thumbnail and not same_seeds:
        notes.append(f"the grids were drawn on different seeds ({a.seeds} vs {b.seeds}): compare the images with care")
    if not any(d.delta is not None for d in deltas):
        notes.append("the runs have no figure in common")
    return RunComparison(a, b, deltas, changes, same_seeds, notes)


# -- tables shared by the CLI and the Runs tab ------------------------------------------------------

SUMMARY_COLUMNS = ("id", "when (UTC)", "kind", "concept", "method", "UA", "IRA", "verdict", "seconds")
DELTA_COLUMNS = ("figure", "run A", "run B", "B - A", "intervals overlap")
METRIC_COLUMNS = ("figure", "value [95 % interval]", "images")


def summary_row(record: RunRecord) -> list:
    """A record's row of SUMMARY_COLUMNS (UA and IRA of the edited model, with 95 % intervals; a
    run of several concepts gives each concept's, named)."""
    when = record.created.replace("T", " ")[:16]

    def cell(name: str) -> str:
        if name in record.metrics:
            return str(record.metrics[name])
        return "; ".join(f"{c}: {record.metrics[f'{c}: {name}']}" for c in record.concepts if f"{c}: {name}" in record.metrics)

    cells = [cell("UA"), cell("IRA")]
    return [record.id, when, record.kind, ", ".join(record.concepts), record.method, *cells, record.verdict or "", record.seconds]


def metric_lines(record: RunRecord) -> list[list[str]]:
    """(figure, value [95 % interval], images) rows of one record."""
    return [[name, str(m), "" if m.n is None else str(m.n)] for name, m in record.metrics.items()]


def delta_lines(comparison: RunComparison) -> list[list[str]]:
    """(figure, run a, run b, b - a, intervals overlap) rows of a comparison."""
    def cell(metric: Metric | None) -> str:
        return "–" if metric is None else str(metric)

    return [[d.name, cell(d.a), cell(d.b), "–" if d.delta is None else f"{d.delta:+.3f}",
             "" if d.overlap is None else "yes" if d.overlap else "no"] for d in comparison.deltas]


"""Sweeps: concepts x training seeds x settings (methods, key-step windows, any unlearning field),
one cell per combination, each an unlearning run scored on held-out prompts against the unedited
model, gathered into one table and one plot.

Why a library module: a reviewer who asks "does this hold on every seed, and against ESD?" needs
the same grid of runs that the benchmarks measure, on their own model and judge, and more runs
than one machine does in an afternoon. The cells are independent, so they run one after another
in this process or as Ray tasks (`ray` is an optional dependency: a local cluster by default, an
existing one with `address`). Whatever runs them, the driver alone writes the store, one JSON line
per finished cell (and per concept's unedited-model evaluation), so a stopped sweep loses only the
cells in flight and a rerun skips every cell already in the store.

Each cell's numbers are evaluate_edit's: UA with its Wilson 95 % interval, and the paired change of
IRA and of every CRA on the same images (Newcombe's interval). A cell meets the goal when UA is at
least `ua_goal` and no retention figure falls more than `max_drop` (point estimates, as such goals
are stated; the intervals are in the table), and it also carries the workbench's verdict (passed,
failed or undecided, from the intervals).
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from kscu.config import METHODS, UnlearnConfig, from_inputs
from kscu.evaluation import EvalReport, evaluate_edit, retention_drops, rows_by_name, verdict
from kscu.export import version_info, write_atomically
from kscu.models import LoadedModel, load_model
from kscu.runs import Metric
from kscu.validation import ConfigError

STORE_FILE = "sweep_cells.jsonl"
RESULTS_FILE = "sweep.json"
PLOT_FILE = "sweep.png"
PRESET_WINDOW = "preset"
RAY_HINT = "pip install ray (an optional dependency: `pip install -r requirements-optional.txt`)"


class SweepError(ValueError):
    """A sweep that cannot run as asked; the message names the part and what to do. Raised before any work."""


@dataclass(frozen=True)
class Setting:
    """One column of a sweep: a name and the unlearning fields it sets (typed, as UnlearnConfig
    holds them); a field left out is the concept's preset. ESD keeps the KSCU preset's iterations
    unless the setting names them, so both methods get the same budget."""

    name: str
    fields: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Setting:
        """'NAME:field=value:field=value' (values as the CLI takes them), e.g. 'esd:method=esd' or 'wide:trajectories=4'."""
        name, *parts = text.split(":")
        if not name.strip() or any("=" not in p for p in parts if p):
            raise SweepError(f"setting {text!r}: write NAME:field=value:field=value, e.g. esd:method=esd or wide:trajectories=4")
        given = dict(p.split("=", 1) for p in parts if p)
        return cls.of(name.strip(), given)

    @classmethod
    def of(cls, name: str, given: dict[str, Any]) -> Setting:
        """A setting from field values (texts are parsed like the CLI's); unknown fields are an error."""
        known = {f.name for f in fields(UnlearnConfig)} - {"concept", "seed"}
        unknown = sorted(set(given) - known)
        if unknown:
            raise SweepError(f"setting {name!r}: no unlearning field {', '.join(unknown)}; fields: {', '.join(sorted(known))}")
        try:
            request = from_inputs({"concept": "x", **given})
        except ConfigError as error:
            raise SweepError(f"setting {name!r}: {error.field}: {error.problem}") from None
        return cls(name, tuple((key, getattr(request, key)) for key in given))

    def config(self, concept: str, seed: int, base: dict[str, Any], model: LoadedModel) -> UnlearnConfig:
        """The resolved config of this setting for one cell (base: the sweep's num_steps / iterations)."""
        chosen = dict(self.fields)
        method = chosen.pop("method", "kscu")
        kscu = replace(UnlearnConfig(concept, seed=seed, **base), **chosen).resolve(model.domain)
        return replace(kscu, method=method).resolve(model.domain) if method != "kscu" else kscu


def grid_settings(methods: Sequence[str], windows: Sequence[str]) -> list[Setting]:
    """methods x windows as settings named 'kscu preset', 'kscu 18-50', ...; a window is 'preset'
    (the concept's preset window) or 'START-END' (steps [START, END) of the schedule). ESD trains
    every step whatever the window, so it is one setting, 'esd', with the KSCU preset's iterations."""
    out = []
    for window in windows:
        if window != PRESET_WINDOW:
            start, dash, end = window.partition("-")
            if not (dash and start.strip().isdigit() and end.strip().isdigit()):
                raise SweepError(f"windows: {window!r} is not a window; write START-END (e.g. 18-50) or {PRESET_WINDOW}")
    for method in methods:
        if method not in METHODS:
            raise SweepError(f"methods: unknown method {method!r}; choose from {', '.join(METHODS)}")
        if method == "esd":
            out.append(Setting.of("esd", {"method": "esd"}))
            continue
        for window in windows:
            start, _, end = window.partition("-")
            given = {} if window == PRESET_WINDOW else {"start_step": start.strip(), "end_step": end.strip()}
            out.append(Setting.of(f"{method} {window}", {"method": method} | given))
    return out


@dataclass(frozen=True)
class Cell:
    """One run of a sweep: a setting, a concept and a training seed."""

    setting: str
    concept: str
    seed: int


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep runs and how it scores it. model: a demo folder, diffusers folder, single file or
    hub id (None: the embedded demo model), readable from every worker; judge/family as load_model
    (and device, allow_pickle) take them. n_erase / n_retain / eval_steps: the held-out evaluation of every cell; quick_eval:
    prompts per set of a second, smaller verdict (0: none), to see whether it agrees."""

    concepts: tuple[str, ...]
    seeds: tuple[int, ...]
    settings: tuple[Setting, ...]
    model: str | None = None
    family: str | None = None
    judge: str | None = None
    device: str | None = None
    allow_pickle: bool = False
    num_steps: int = 50
    iterations: int | None = None
    n_erase: int = 100
    n_retain: int = 120
    eval_steps: int = 25
    quick_eval: int = 0
    ua_goal: float = 0.95
    max_drop: float = 0.05
    threads: int = 2

    def __post_init__(self) -> None:
        for name in ("concepts", "seeds", "settings"):
            if not getattr(self, name):
                raise SweepError(f"{name}: the sweep has none; give at least one")
        names = [s.name for s in self.settings]
        if len(set(names)) < len(names):
            raise SweepError(f"settings: two settings share a name ({', '.join(sorted({n for n in names if names.count(n) > 1}))}); name each once")
        for name in ("n_erase", "n_retain", "eval_steps", "num_steps", "threads"):
            if getattr(self, name) < 1:
                raise SweepError(f"{name}: {getattr(self, name)} is too small; give at least 1")
        if self.iterations is not None and self.iterations < 1:
            raise SweepError(f"iterations: {self.iterations} is too small; give at least 1")

    def cells(self) -> list[Cell]:
        return [Cell(s.name, c, seed) for s in self.settings for c in self.concepts for seed in self.seeds]

    def setting(self, name: str) -> Setting:
        return next(s for s in self.settings if s.name == name)

    @property
    def training(self) -> dict[str, Any]:
        return {"num_steps": self.num_steps} | ({"iterations": self.iterations} if self.iterations is not None else {})

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """(erase, retain) prompts of each evaluation: the full one, then the quick one if asked."""
        return [(self.n_erase, self.n_retain)] + ([(self.quick_eval, self.quick_eval)] if self.quick_eval else [])

    def evaluation(self, size: tuple[int, int]) -> dict[str, int]:
        return {"n_erase": size[0], "n_retain": size[1], "num_steps": self.eval_steps}


@dataclass(frozen=True)
class CellResult:
    """What one cell measured. ua: UA with its 95 % interval and image count; drops: how far IRA and
    each CRA fell (positive: lost), each with its paired 95 % interval; worst: the drop that fell most."""

    setting: str
    concept: str
    seed: int
    config: dict
    seconds: float
    unet_forwards: int
    ua: Metric
    drops: dict[str, Metric]
    worst: str
    ira_by_value: dict[str, float]
    goal_met: bool
    verdict: str
    quick_verdict: str | None = None

    @property
    def cell(self) -> Cell:
        return Cell(self.setting, self.concept, self.seed)

    def to_dict(self) -> dict:
        return {**asdict(self), "ua": _metric_dict(self.ua), "drops": {k: _metric_dict(m) for k, m in self.drops.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> CellResult:
        names = {f.name for f in fields(cls)}
        given = {k: v for k, v in data.items() if k in names}
        return cls(**given | {"ua": Metric.from_dict(data["ua"]), "drops": {k: Metric.from_dict(m) for k, m in data["drops"].items()}})

    def row(self) -> dict:
        """The table's row: changes in points (negative: lost), the worst change's pessimistic end."""
        worst = self.drops[self.worst]
        return {"setting": self.setting, "concept": self.concept, "seed": self.seed, "seconds": round(self.seconds, 1),
                "ua": self.ua.value, "ua_low": self.ua.low, "ira_change": round(0.0 - self.drops["ira"].value * 100, 1),
                "worst": self.worst, "worst_change": round(0.0 - worst.value * 100, 1),
                "worst_low": round(0.0 - worst.high * 100, 1) if worst.high is not None else None,
                "goal": "met" if self.goal_met else "missed", "verdict": self.verdict, "quick_verdict": self.quick_verdict}


def _metric_dict(metric: Metric) -> dict:
    return {k: v for k, v in asdict(metric).items() if v is not None}


@dataclass
class SweepResult:
    """Every cell of the plan that is in the store (run now or earlier), in the plan's order."""

    plan: SweepPlan
    cells: list[CellResult]
    bases: dict[str, EvalReport] = field(default_factory=dict)
    """The unedited model's evaluation per concept, where this run or an earlier one measured it."""
    ran: int = 0
    """Cells this call ran (the rest came from the store)."""

    def rows(self) -> list[dict]:
        return [c.row() for c in self.cells]

    def summary(self) -> dict[str, dict[str, dict]]:
        """Per setting and concept: cells that met the goal, cells, mean training seconds."""
        out: dict[str, dict[str, dict]] = {}
        for s in self.plan.settings:
            for concept in self.plan.concepts:
                mine = [c for c in self.cells if c.setting == s.name and c.concept == concept]
                out.setdefault(s.name, {})[concept] = {
                    "goal_met": sum(c.goal_met for c in mine), "cells": len(mine),
                    "seconds": round(sum(c.seconds for c in mine) / len(mine), 1) if mine else None}
        return out

    def to_dict(self) -> dict:
        return {"cells": [c.to_dict() for c in self.cells], "summary": self.summary(),
                "bases": {concept: _base_summary(report) for concept, report in self.bases.items()}}


def _base_summary(report: EvalReport) -> dict:
    before = report.before
    return {"ua": before["ua"], "ira": before["ira"], "cra": before["cra"], "ira_by_value": before["ira_by_value"]}


# -- the work of one cell (in this process or a Ray worker) -----------------------------------------

@functools.lru_cache(maxsize=2)
def _load(source: str | None, family: str | None, judge: str | None, device: str | None, allow_pickle: bool) -> LoadedModel:
    return load_model(source, device=device, allow_pickle=allow_pickle, family=family, judge=judge)


def _model(plan: SweepPlan) -> LoadedModel:
    """One load per process and model: a Ray worker runs many cells of the same model."""
    return _load(plan.model, plan.family, plan.judge, plan.device, plan.allow_pickle)


def _threads(count: int) -> None:
    import torch

    torch.set_num_threads(count)


def check_plan(plan: SweepPlan) -> None:
    """Resolve every cell's config against the model's domain (window, kind, anchor ...) so that a
    setting that cannot run fails before any cell does; raises SweepError naming the cell."""
    model = _model(plan)
    if model.domain.judge is None:
        raise SweepError("judge: this model has none, and a sweep scores every cell with one; load it with a judge "
                         "(a CLIP folder or hub id)")
    for cell in plan.cells():
        try:
            plan.setting(cell.setting).config(cell.concept, cell.seed, plan.training, model)
        except ConfigError as error:
            raise SweepError(f"setting {cell.setting!r}, concept {cell.concept!r}: {error.field}: {error.problem}") from None


def evaluate_base(plan: SweepPlan, concept: str, size: tuple[int, int]) -> EvalReport:
    """The unedited model's evaluation of one concept at one of plan.sizes, on the prompts and seeds every cell uses."""
    _threads(plan.threads)
    return evaluate_edit(_model(plan), None, concept, **plan.evaluation(size))


def run_cell(plan: SweepPlan, cell: Cell, base: EvalReport, quick_base: EvalReport | None = None) -> CellResult:
    """Train the cell's edit and score it against `base` (and `quick_base`, the smaller evaluation)."""
    from kscu.trainer import unlearn

    _threads(plan.threads)
    model = _model(plan)
    config = plan.setting(cell.setting).config(cell.concept, cell.seed, plan.training, model)
    result = unlearn(model, config)
    edited = result.apply(model)
    report = evaluate_edit(model, edited, cell.concept, base=base, **plan.evaluation(plan.sizes[0]))
    drops = {name.lower(): Metric.from_dict(drop.to_dict()) for name, drop in retention_drops(report.before, report.after).items()}
    worst = max(drops, key=lambda k: drops[k].value)
    ua = Metric.of(rows_by_name(report.after)["UA"])
    quick = None
    if quick_base is not None:
        small = evaluate_edit(model, edited, cell.concept, base=quick_base, **plan.evaluation(plan.sizes[1]))
        quick = verdict(small).outcome
    return CellResult(cell.setting, cell.concept, cell.seed, config.to_dict(), round(result.seconds, 2), result.unet_forwards, ua,
                      drops, worst, report.after["ira_by_value"],
                      ua.value >= plan.ua_goal and all(d.value <= plan.max_drop for d in drops.values()), verdict(report).outcome, quick)


# -- the store -------------------------------------------------------------------------------------

def read_store(path: Path) -> tuple[dict[Cell, CellResult], dict[str, dict]]:
    """Finished cells and the unedited model's reports (by concept and size) in a store; an
    unreadable last line (a write cut short) is ignored, as its cell was not finished."""
    cells: dict[Cell, CellResult] = {}
    bases: dict[str, dict] = {}
    if not path.exists():
        return cells, bases
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise SweepError(f"{path}: line {number} is not JSON; move the file away to start the sweep afresh") from None
        if "base" in data:
            bases[_base_key(data["base"], data["report"]["n_erase"], data["report"]["n_retain"])] = data["report"]
        else:
            result = CellResult.from_dict(data)
            cells[result.cell] = result
    return cells, bases


def _base_key(concept: str, n_erase: int, n_retain: int) -> str:
    return f"{concept} {n_erase}+{n_retain}"


def _report(data: dict) -> EvalReport:
    return EvalReport(**data | {"neighbours": tuple(data["neighbours"]), "also_erased": tuple(data["also_erased"])})


def _append(path: Path, data: dict) -> None:
    """One line per finished piece of work, flushed at once: a stopped sweep keeps every finished cell."""
    with path.open("a") as f:
        f.write(json.dumps(data) + "\n")
        f.flush()


# -- running a sweep -------------------------------------------------------------------------------

def run_sweep(plan: SweepPlan, out: str | Path, *, ray_address: str | None = None, use_ray: bool = False, workers: int | None = None,
              on_cell: Callable[[CellResult], None] | None = None) -> SweepResult:
    """Run every cell of `plan` that `out`'s store does not hold yet; returns all of the plan's cells.

    use_ray: run the cells as Ray tasks, each with plan.threads CPUs: on a local Ray of `workers`
    concurrent tasks (default: this machine's cores / plan.threads), or on the cluster at
    ray_address (which implies use_ray). on_cell: called in the driver after each cell is stored.
    A failing cell stops the sweep with its error; the cells finished before it stay in the store.
    """
    out = Path(out)
    store = out / STORE_FILE
    done, stored_bases = read_store(store)
    todo = [cell for cell in plan.cells() if cell not in done]
    runner = _RayRunner(plan, ray_address, workers) if use_ray or ray_address else _LocalRunner(plan)
    ran = 0
    try:
        if todo:
            runner.check()  # before anything is written: a setting that cannot run leaves no folder behind
        out.mkdir(parents=True, exist_ok=True)
        needed = [(concept, size) for concept in dict.fromkeys(c.concept for c in todo) for size in plan.sizes
                  if _base_key(concept, *size) not in stored_bases]
        for concept, size, report in runner.bases(needed):
            stored_bases[_base_key(concept, *size)] = report.to_dict()
            _append(store, {"base": concept, "report": report.to_dict()})
        quick_of = (lambda c: _report(stored_bases[_base_key(c, plan.quick_eval, plan.quick_eval)])) if plan.quick_eval else (lambda c: None)
        jobs = [(cell, _report(stored_bases[_base_key(cell.concept, plan.n_erase, plan.n_retain)]), quick_of(cell.concept)) for cell in todo]
        for result in runner.cells(jobs):
            done[result.cell] = result
            _append(store, result.to_dict())
            ran += 1
            if on_cell is not None:
                on_cell(result)
    finally:
        runner.close()
    bases = {c: _report(stored_bases[k]) for c in plan.concepts if (k := _base_key(c, plan.n_erase, plan.n_retain)) in stored_bases}
    return SweepResult(plan, [done[c] for c in plan.cells() if c in done], bases, ran)


class _LocalRunner:
    """Cells one after another in this process (the model loaded once)."""

    def __init__(self, plan: SweepPlan) -> None:
        self.plan = plan

    def check(self) -> None:
        check_plan(self.plan)

    def bases(self, needed: list[tuple[str, tuple[int, int]]]) -> Iterable[tuple[str, tuple[int, int], EvalReport]]:
        for concept, size in needed:
            yield concept, size, evaluate_base(self.plan, concept, size)

    def cells(self, jobs) -> Iterable[CellResult]:
        for cell, base, quick in jobs:
            yield run_cell(self.plan, cell, base, quick)

    def close(self) -> None:
        pass


class _RayRunner:
    """Cells as Ray tasks, plan.threads CPUs each; results are stored by the driver as they finish."""

    def __init__(self, plan: SweepPlan, address: str | None, workers: int | None) -> None:
        try:
            import ray
        except ImportError:
            raise SweepError(f"ray: not installed; {RAY_HINT}, or run the sweep without Ray") from None
        self.ray, self.plan = ray, plan
        if workers is not None and workers < 1:
            raise SweepError(f"workers: {workers} is too small; give at least 1")
        package = Path(__file__).resolve().parent
        if address:
            # A cluster gets this package (its nodes need torch and diffusers installed); the model must be readable there.
            ray.init(address=address, runtime_env={"py_modules": [str(package)]}, log_to_driver=False)
        else:
            cpus = (workers or max(1, (os.cpu_count() or 1) // plan.threads)) * plan.threads
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": str(package.parent)}})
        self.remote = {fn.__name__: ray.remote(num_cpus=plan.threads, max_retries=0)(fn)
                       for fn in (check_plan, evaluate_base, run_cell)}

    def check(self) -> None:
        self.ray.get(self.remote["check_plan"].remote(self.plan))

    def _as_done(self, refs: dict):
        pending = list(refs)
        while pending:
            ready, pending = self.ray.wait(pending, num_returns=1)
            yield refs[ready[0]], self.ray.get(ready[0])

    def bases(self, needed):
        refs = {}
        for concept, size in needed:
            refs[self.remote["evaluate_base"].remote(self.plan, concept, size)] = (concept, size)
        for (concept, size), report in self._as_done(refs):
            yield concept, size, report

    def cells(self, jobs):
        refs = {self.remote["run_cell"].remote(self.plan, cell, base, quick): cell for cell, base, quick in jobs}
        for _, result in self._as_done(refs):
            yield result

    def close(self) -> None:
        self.ray.shutdown()



def save(result: SweepResult, out: str | Path) -> tuple[Path, Path]:
    """Write the sweep's table and summary (sweep.json: the plan, every cell, the unedited model's
    figures, versions) and its plot (sweep.png) into `out`, each atomically; returns both paths."""
    from kscu.plots import sweep_figure

    out = Path(out)
    plan = result.plan
    payload = {"plan": asdict(plan) | {"settings": [{"name": s.name, "fields": dict(s.fields)} for s in plan.settings]},
               "versions": version_info(), **result.to_dict()}
    text = json.dumps(payload, indent=1, default=list)
    write_atomically(out / RESULTS_FILE, lambda tmp: tmp.write_text(text + "\n"))
    figure = sweep_figure(result)
    write_atomically(out / PLOT_FILE, lambda tmp: figure.savefig(tmp, format="png", dpi=90))
    return out / RESULTS_FILE, out / PLOT_FILE

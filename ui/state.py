"""The one WorkbenchState every tab shares: the loaded model, the job runner, the last reports
and edits.

Why one shared object rather than per-browser-session gr.State:
- the model is the largest thing in memory (gigabytes for SD1.x); a copy per visitor would not fit;
- there is one device, and two heavy jobs on it run slower than one after the other, so one
  JobRunner serialises every heavy job of every visitor (a second start is refused, not queued);
- a background job must outlive the page that started it: reloading the page, or opening a
  second tab, shows the running job and the last results.
The price: on a public deployment (a Hugging Face Space) visitors see each other's edits and
jobs. That is right for a demo of one model, and says so in the intro text.
"""
from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from kscu.config import UnlearnConfig
from kscu.influence import InfluenceReport
from kscu.jobs import Job, JobRunner, JobSnapshot
from kscu.models import LoadedModel
from kscu.runs import RECORDABLE, default_root, record_run
from kscu.stats import ERASE_PROMPTS, RETAIN_PROMPTS
from kscu.trainer import UnlearnResult

METHOD_NAMES = {"kscu": "KSCU", "robust": "robust KSCU", "esd": "ESD", "imported": "imported"}
"""The kept edits, one per key: a KSCU edit trained with config.robust (or the experimental
config.adversarial) is kept apart from the plain one, so the two can be compared and attacked side
by side; an edit made outside the workbench (kscu.importing) has its own place."""


def edit_key(config: UnlearnConfig) -> str:
    """Which kept edit a result replaces (a key of METHOD_NAMES)."""
    return "robust" if config.method == "kscu" and (config.robust or config.adversarial) else config.method


@dataclass
class QuickSettings:
    """What Quick erase runs besides the preset. iterations None = the preset's count; a smaller
    count (app flag --quick-iterations / KSCU_QUICK_ITERATIONS) exists for fast tests and demos.
    n_erase/n_retain: prompts per metric set, a full evaluation's (kscu.stats.ERASE_PROMPTS: fewer
    leave the verdict undecided); --quick-eval / KSCU_QUICK_EVAL sets both, for fast tests."""

    iterations: int | None = None
    n_erase: int = ERASE_PROMPTS
    n_retain: int = RETAIN_PROMPTS


@dataclass(frozen=True)
class TrainingView:
    """What the Unlearn tab shows beside a training job's snapshot: the config it resolved and the
    captions of its preview images."""

    config: UnlearnConfig
    captions: list[str]


@dataclass(frozen=True)
class ComparisonView:
    """What the Compare tab needs beside a comparison's result to explain a missing metrics table:
    whether metrics were asked for, and the neighbour rows asked for (None: the domain's)."""

    measure: bool
    neighbours: list[str] | None


@dataclass
class WorkbenchState:
    """Everything the tabs share (see the module docstring for why it is shared)."""

    model: LoadedModel | None = None
    model_error: str | None = None
    """Why the model given at start could not be loaded (shown in the Model tab)."""
    online: bool = False
    quick: QuickSettings = field(default_factory=QuickSettings)
    runner: JobRunner = field(default_factory=JobRunner)
    jobs: dict[str, Job] = field(default_factory=dict)
    """The last job of each purpose ("quick", "analyze", "unlearn", "compare")."""
    job_info: dict[str, TrainingView | ComparisonView] = field(default_factory=dict)
    """Per job id, what the UI shows besides the snapshot."""
    reports: list[InfluenceReport] = field(default_factory=list)
    """The last influence analysis (one report per concept)."""
    results: dict[str, UnlearnResult] = field(default_factory=dict)
    """The last edit per key of METHOD_NAMES ("kscu", "robust", "esd"), so they can be compared side by side."""
    current: str | None = None
    """The method of the most recent edit: what Compare and Export pick by default."""
    files_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kscu-workbench-")))
    """Where downloads are written (the app allows Gradio to serve this folder)."""
    runs_root: Path = field(default_factory=default_root)
    """The run history (kscu.runs): every finished unlearning, quick erase, comparison and attack
    job is recorded there, so the Runs tab lists it after a restart too."""
    _adopted: set[str] = field(default_factory=set)
    _edited: tuple[UnlearnResult, Any] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.runner.on_done = self.record_finished

    def record_finished(self, job: Job) -> None:
        """Record a job that finished with a run's result in the history (other jobs, such as model
        loading or exports, are not runs and are left out)."""
        if job.state == "done" and isinstance(job.result, RECORDABLE) and self.model is not None:
            record_run(self.runs_root, job.result, self.model)

    def require_model(self) -> LoadedModel:
        if self.model is None:
            why = f" ({self.model_error})" if self.model_error else ""
            raise ValueError(f"No model is loaded{why}. Open the Model tab and load one.")
        return self.model

    def set_model(self, model: LoadedModel) -> None:
        """Switch models; analyses and edits of the previous model no longer apply and are dropped."""
        with self._lock:
            self.model, self.model_error = model, None
            self.reports, self.results, self.current = [], {}, None
            self.jobs, self._edited = {}, None  # finished jobs' results belong to the old model

    def submit(self, purpose: str, name: str, fn: Callable[[Job], Any]) -> Job:
        """Start a background job (JobBusy if another heavy job runs) and remember it by purpose."""
        job = self.runner.submit(name, fn)
        self.jobs[purpose] = job
        return job

    def track(self, purpose: str, job: Job) -> Job:
        """Remember a job started elsewhere (kscu.jobs.start_unlearning) under its purpose."""
        self.jobs[purpose] = job
        return job

    def snapshot(self, purpose: str) -> JobSnapshot | None:
        job = self.jobs.get(purpose)
        return job.snapshot() if job is not None else None

    def run_now(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run short heavy work (model loading, exports) through the runner and wait for it, so it
        never overlaps a background job; re-raises the work's own exception for a clear message."""
        failure: list[BaseException] = []

        def work(job: Job) -> Any:
            try:
                return fn()
            except Exception as exc:
                failure.append(exc)
                raise

        job = self.runner.submit(name, work)
        job.wait()
        if failure:
            raise failure[0]
        return job.snapshot().result

    def keep_result(self, result: UnlearnResult) -> None:
        """Make `result` the last edit of its method and the current one."""
        with self._lock:
            key = edit_key(result.config)
            self.results[key] = result
            self.current = key

    def adopt_finished(self) -> None:
        """Keep the result of a finished Unlearn job (started through kscu.jobs.start_unlearning,
        whose function cannot store it here itself); each job is adopted once."""
        job = self.jobs.get("unlearn")
        if job is not None and job.id not in self._adopted:
            snap = job.snapshot()
            if snap.done and isinstance(snap.result, UnlearnResult):
                self._adopted.add(job.id)
                self.keep_result(snap.result)

    def result(self, method: str | None = None) -> UnlearnResult:
        """The last edit of `method` (default: the current one), or a ValueError saying how to get one."""
        self.adopt_finished()
        method = method or self.current
        if method is None or method not in self.results:
            which = f"no {METHOD_NAMES.get(method, method)} edit yet" if method else "no edit yet"
            raise ValueError(f"There is {which}: run Quick erase or Unlearn, or load an edit in the Export tab.")
        return self.results[method]

    def edited_unet(self, result: UnlearnResult):
        """The base UNet with `result` applied; the last one is cached (a UNet copy is large)."""
        with self._lock:
            if self._edited is not None and self._edited[0] is result:
                return self._edited[1]
        unet = result.apply(self.require_model())
        with self._lock:
            self._edited = (result, unet)
        return unet

"""Background jobs: long work (unlearning, influence analysis, evaluation) runs in a daemon
thread while a UI polls a snapshot of its progress.

Why one job at a time: every job here is GPU/CPU-heavy, and two of them share the device
badly (on the 2-core reference machine two torch jobs each run 2.5-3x slower). So a JobRunner
refuses a second submit while one is queued or running (JobBusy, saying how far the running
one is); `JobRunner(queue=True)` queues it instead, for scripts that submit a batch of work.

A job's function receives its Job: it reports through `set_progress` and stops early when
`cancel_requested` is true by raising JobCancelled (any kscu.progress.Cancelled counts too).
Failures are kept on the job (state "failed", a one-line `error`, the full `traceback`) and
logged, never lost in the thread.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import traceback
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from kscu.config import UnlearnConfig
from kscu.models import LoadedModel
from kscu.sampling import Sampler
from kscu.progress import Cancelled, Update, phase
from kscu.trainer import Progress, setup_share, unlearn
from kscu.validation import CheckedConfig, check_config

log = logging.getLogger(__name__)

JOB_THREADS = int(os.environ.get("KSCU_JOB_THREADS", "1"))
"""torch CPU threads inside the job thread. Measured on the 2-core machine (100 KSCU iterations of
the demo model): main thread with 2 torch threads 11.8 s; a worker thread with 2 threads 27.9 s
(two OpenMP teams competing for two cores); a worker thread with 1 thread 10.1 s. Set
KSCU_JOB_THREADS to try more on a larger CPU."""
PREVIEW_STEPS = 20
"""DDIM steps of live previews: enough to show what the edit does, far fewer than training's 50."""
PREVIEW_GUIDANCE = 3.0


class JobBusy(RuntimeError):
    """A job is already queued or running and the runner does not queue."""


class JobCancelled(Cancelled):
    """Raised by a job's function to stop early after `Job.cancel()`."""


@dataclass(frozen=True)
class JobSnapshot:
    """A job's fields at one moment (Job.snapshot), read by pollers without the job's lock; see Job
    for what each means. elapsed: seconds since it started (to its end once finished)."""

    id: str
    name: str
    state: str
    progress: float
    message: str
    started: float | None
    finished: float | None
    elapsed: float
    eta: float | None
    losses: list[tuple[int, int, float]]
    preview: np.ndarray | list | None
    preview_iteration: int | None
    result: Any
    error: str | None
    traceback: str | None
    cancel_requested: bool

    @property
    def active(self) -> bool:
        """Queued or running: the UI keeps polling."""
        return self.state in ("queued", "running")

    @property
    def done(self) -> bool:
        """Finished with a result (not failed, not cancelled)."""
        return self.state == "done"


class Job:
    """One piece of background work and everything a UI shows about it.

    state: "queued" -> "running" -> one of "done" (result set), "failed" (error and traceback
    set) or "cancelled". Times are time.time() seconds; eta is seconds left, None if unknown.

    Fields are written by the worker thread and read by pollers: read them through
    `snapshot()`, which copies them under the job's lock.
    """

    def __init__(self, name: str) -> None:
        self.id = uuid.uuid4().hex[:8]
        self.name = name
        self.state = "queued"
        self.progress = 0.0
        self.message = "queued"
        self.started: float | None = None
        self.finished: float | None = None
        self.eta: float | None = None
        self.losses: list[tuple[int, int, float]] = []
        """(iteration, step_index, loss) points for the live loss curve."""
        self.preview: np.ndarray | list | None = None
        """Latest preview images (uint8 NHWC or a list of PIL images)."""
        self.preview_iteration: int | None = None
        self.result: Any = None
        self.error: str | None = None
        """One readable line for the UI; the full traceback is in `traceback`."""
        self.traceback: str | None = None
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._finished = threading.Event()

    def cancel(self) -> None:
        """Ask the job to stop; it ends "cancelled" at its next check (or before it starts)."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    @property
    def is_finished(self) -> bool:
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (any final state); False on timeout."""
        return self._finished.wait(timeout)

    def set_progress(self, fraction: float, message: str | None = None, eta: float | None = None) -> None:
        """Report progress in [0, 1], optionally with a status line and seconds left."""
        with self._lock:
            self.progress = min(1.0, max(0.0, float(fraction)))
            if message is not None:
                self.message = message
            self.eta = eta

    def report(self, update: Update) -> None:
        """A kscu.progress.ProgressFn: pass `job.report` as any long function's on_progress."""
        self.set_progress(update.fraction, update.message, update.eta)

    def add_loss(self, iteration: int, step_index: int, loss: float) -> None:
        with self._lock:
            self.losses.append((iteration, step_index, loss))

    def set_preview(self, images: np.ndarray | list, iteration: int) -> None:
        with self._lock:
            self.preview, self.preview_iteration = images, iteration

    def snapshot(self) -> JobSnapshot:
        """A consistent copy of the fields, safe to read while the job runs."""
        with self._lock:
            now = self.finished or time.time()
            return JobSnapshot(
                self.id, self.name, self.state, self.progress, self.message, self.started, self.finished,
                now - self.started if self.started is not None else 0.0, self.eta, list(self.losses), self.preview,
                self.preview_iteration, self.result, self.error, self.traceback, self._cancel.is_set(),
            )

    def _set(self, **fields: Any) -> None:
        with self._lock:
            for name, value in fields.items():
                setattr(self, name, value)

    def _run(self, fn: Callable[["Job"], Any], on_done: Callable[["Job"], None] | None = None) -> None:
        """Run fn(self) and record how it ended (all final fields in one update), then on_done(self)
        before wait() returns, so a waiter sees what on_done wrote; never raises."""
        try:
            if self.cancel_requested:
                raise JobCancelled("cancelled before it started")
            self._set(state="running", started=time.time(), message="running")
            result = fn(self)
        except Cancelled as exc:
            end = {"state": "cancelled", "message": str(exc) or "cancelled", "eta": None}
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            if not first:
                error = type(exc).__name__
            elif isinstance(exc, ValueError):  # kscu's ValueErrors (a diverged run, a bad file) are written for the user
                error = first
            else:
                error = f"{type(exc).__name__}: {first}"
            log.error("job %s (%s) failed: %s", self.id, self.name, traceback.format_exc())
            end = {"state": "failed", "message": error, "error": error, "traceback": traceback.format_exc(), "eta": None}
        else:
            seconds = time.time() - (self.started or time.time())
            end = {"state": "done", "result": result, "progress": 1.0, "eta": 0.0, "message": f"done in {seconds:.0f} s"}
        self._set(finished=time.time(), **end)
        if on_done is not None:
            try:
                on_done(self)
            except Exception:  # the job itself succeeded or failed as recorded above
                log.exception("after job %s (%s) finished, on_done failed", self.id, self.name)
        self._finished.set()


class JobRunner:
    """Runs jobs one at a time in a daemon thread.

    queue=False (the default) refuses a submit while a job is queued or running: in an
    interactive UI a silently queued second run is confusing, and the user can cancel the
    first. queue=True runs submitted jobs in order. The runner keeps the last `keep` jobs
    (results may hold large tensors) so a UI can look a job up by id. on_done(job) is called as
    each job finishes, in the worker thread (the app records finished runs there: kscu.runs).
    """

    def __init__(self, queue: bool = False, keep: int = 8, on_done: Callable[[Job], None] | None = None) -> None:
        self.queue = queue
        self.keep = keep
        self.on_done = on_done
        self._lock = threading.Lock()
        self._pending: deque[tuple[Job, Callable[[Job], Any]]] = deque()
        self._active: Job | None = None
        self._jobs: dict[str, Job] = {}
        self._worker: threading.Thread | None = None

    def submit(self, name: str, fn: Callable[[Job], Any]) -> Job:
        """Start fn(job) in the background (or queue it); returns the Job at once."""
        with self._lock:
            busy = self._active or (self._pending[0][0] if self._pending else None)
            if busy is not None and not self.queue:
                if busy.cancel_requested:
                    raise JobBusy(f"{busy.name!r} is still stopping after the cancel (it stops at its next iteration); "
                                  "start again once it shows Cancelled")
                raise JobBusy(f"{busy.name!r} is already running ({busy.progress:.0%} done); wait for it or cancel it")
            job = Job(name)
            self._jobs[job.id] = job
            self._forget_old()
            self._pending.append((job, fn))
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="kscu-jobs", daemon=True)
                self._worker.start()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    @property
    def current(self) -> Job | None:
        """The running job, else the next queued one, else None."""
        with self._lock:
            return self._active or (self._pending[0][0] if self._pending else None)

    @property
    def jobs(self) -> list[Job]:
        """Known jobs, oldest first."""
        with self._lock:
            return list(self._jobs.values())

    def _forget_old(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.is_finished]
        for job_id in finished[: max(0, len(self._jobs) - self.keep)]:
            del self._jobs[job_id]

    def _work(self) -> None:
        torch.set_num_threads(JOB_THREADS)  # process-wide in torch: in the app the jobs are the compute
        while True:
            with self._lock:
                if not self._pending:
                    self._worker = None  # the next submit starts a fresh thread
                    return
                job, fn = self._pending.popleft()
                self._active = job
            try:
                job._run(fn, self.on_done)
            finally:
                with self._lock:
                    self._active = None


def start_unlearning(
    runner: JobRunner,
    model: LoadedModel,
    config: UnlearnConfig | CheckedConfig,
    preview_prompts: list[str] | None = None,
    preview_seeds: list[int] | None = None,
    preview_every: int = 50,
    wrap: Callable[[Callable[[Job], Any]], Callable[[Job], Any]] | None = None,
) -> Job:
    """Run kscu.trainer.unlearn as a job; its result is the UnlearnResult.

    `wrap` decorates the job's work function before it is submitted: the UI passes
    `spaces.GPU(duration=...)` there so that on Hugging Face ZeroGPU the training thread holds a GPU.

    The job records progress, ETA and a (iteration, step_index, loss) point per iteration.
    With preview_prompts, every `preview_every` iterations it samples them with the UNet being
    tuned (PREVIEW_STEPS DDIM steps, guidance PREVIEW_GUIDANCE, seeds default 0..n-1). Cost: one
    preview is PREVIEW_STEPS guided UNet calls at batch 2n plus a VAE decode, roughly what 5-10
    training iterations cost for n <= 4, so about 10-20% extra at preview_every=50; keep n small.
    Cancelling stops at the next iteration (state "cancelled"); the base model is never modified.
    """
    checked = config if isinstance(config, CheckedConfig) else check_config(config, model)  # bad settings fail here, not in the thread
    cfg = checked.config
    prompts = list(preview_prompts or [])
    seeds = list(preview_seeds) if preview_seeds is not None else list(range(len(prompts)))
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(prompts)} preview prompts but {len(seeds)} preview seeds; give one seed per prompt")
    if preview_every < 1:
        raise ValueError("preview_every must be at least 1 iteration")

    def work(job: Job) -> Any:
        sampler = Sampler(model, PREVIEW_STEPS, PREVIEW_GUIDANCE) if prompts else None

        share = setup_share(checked)  # one bar for the set-up (robust analysis, trajectory pool) and the iterations
        training = phase(job.report, share, 1.0)

        def on_progress(p: Progress) -> None:
            job.add_loss(p.iteration, p.step_index, p.loss)
            training(p)
            if sampler is not None and p.iteration % preview_every == 0:
                with torch.no_grad(), model.autocast():  # the tuned copy is float32, as in the trainer
                    job.set_preview(sampler.generate(p.unet, prompts, seeds), p.iteration)

        return unlearn(model, checked, on_progress, should_stop=lambda: job.cancel_requested, on_setup=phase(job.report, 0.0, share))

    names = ", ".join(repr(part.concept) for part in checked.parts)
    iterations = sum(part.iterations for part in checked.parts)
    how = "kscu, robust window" if any(checked.decide_start) else f"{cfg.method}, {iterations} iterations"  # robust: counted after the analysis
    return runner.submit(f"unlearn {names} ({how})", wrap(work) if wrap else work)

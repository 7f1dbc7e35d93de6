"""Background jobs: progress, refusal of a second job, cancellation, failures, live previews."""
import copy
import threading

import pytest
import torch

from conftest import HANG_GUARD_SECONDS
from kscu.config import UnlearnConfig
from kscu.jobs import PREVIEW_GUIDANCE, PREVIEW_STEPS, JobBusy, JobCancelled, JobRunner, start_unlearning
from kscu.sampling import Sampler
from kscu.trainer import UnlearnResult

TIMEOUT = HANG_GUARD_SECONDS
"""Seconds before a wait gives up: a safety net only (jobs here take a few seconds)."""


def short_config(iterations: int = 8) -> UnlearnConfig:
    return UnlearnConfig("striped", kind="style", iterations=iterations, num_steps=10, start_step=5, lr=1e-3)


def test_unlearning_job_runs_to_done_with_progress_and_loss_points(micro_demo):
    job = start_unlearning(JobRunner(), micro_demo, short_config(8))
    assert job.wait(TIMEOUT)
    snap = job.snapshot()
    assert snap.state == "done", snap.error
    assert snap.progress == 1.0 and snap.eta == 0.0
    assert [p[0] for p in snap.losses] == list(range(1, 9))
    assert isinstance(snap.result, UnlearnResult)
    assert [p[2] for p in snap.losses] == snap.result.losses
    assert [p[1] for p in snap.losses] == snap.result.steps
    assert snap.finished >= snap.started and snap.preview is None


def test_one_bar_covers_the_pool_draw_then_the_iterations(micro_demo):
    """A run that draws a trajectory pool first spends about half its time there: the job's bar
    moves through the draw (up to SETUP_SHARE, saying what it draws) and then the iterations, never
    back, instead of sitting at 0 % until the first iteration."""
    from kscu.trainer import SETUP_SHARE

    heard = []

    def wrap(fn):
        def wrapped(job):
            report = job.report
            job.report = lambda update: (heard.append((update.fraction, update.message)), report(update))
            return fn(job)
        return wrapped

    config = UnlearnConfig("striped", kind="style", iterations=4, num_steps=10, start_step=5, lr=1e-3, pool=4)
    job = start_unlearning(JobRunner(), micro_demo, config, wrap=wrap)
    assert job.wait(TIMEOUT) and job.snapshot().state == "done", job.snapshot().error
    fractions = [f for f, _ in heard]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    drawing = [f for f, m in heard if m.startswith("Drawing the phrasings to erase")]
    assert drawing and drawing[0] < SETUP_SHARE / 2 and max(f for f, m in heard if m.startswith("Drawing")) == SETUP_SHARE
    assert min(f for f, m in heard if not m.startswith("Drawing")) > SETUP_SHARE, "the iterations fill the rest"


def test_the_work_function_runs_inside_the_given_wrapper(micro_demo):
    """The hook the UI uses for spaces.GPU: the training must run inside the wrapped call."""
    entered = []

    def wrap(fn):
        def wrapped(job):
            entered.append(threading.current_thread() is not threading.main_thread())
            return fn(job)
        return wrapped

    job = start_unlearning(JobRunner(), micro_demo, short_config(2), wrap=wrap)
    assert job.wait(TIMEOUT) and job.snapshot().state == "done"
    assert entered == [True]


def test_a_second_submit_while_one_runs_is_refused():
    runner, release = JobRunner(), threading.Event()

    def blocked(job):
        job.set_progress(0.25)
        release.wait(TIMEOUT)
        return "first"

    first = runner.submit("first job", blocked)
    with pytest.raises(JobBusy, match="first job.*already running.*wait for it or cancel it"):
        runner.submit("second job", lambda job: "second")
    release.set()
    assert first.wait(TIMEOUT) and first.snapshot().result == "first"
    second = runner.submit("second job", lambda job: "second")  # free again
    assert second.wait(TIMEOUT) and second.snapshot().result == "second"
    assert runner.get(first.id) is first and runner.current is None


def test_a_queueing_runner_runs_jobs_in_order_and_skips_cancelled_ones():
    runner, release, order = JobRunner(queue=True), threading.Event(), []

    def work(name):
        def fn(job):
            release.wait(TIMEOUT)
            order.append(name)
        return fn

    jobs = [runner.submit(name, work(name)) for name in ("a", "b", "c")]
    jobs[1].cancel()
    assert jobs[2].snapshot().state == "queued"
    release.set()
    assert all(job.wait(TIMEOUT) for job in jobs)
    assert order == ["a", "c"]
    assert [job.snapshot().state for job in jobs] == ["done", "cancelled", "done"]


def test_cancelling_mid_run_leaves_the_base_unet_bit_identical(micro_demo):
    base = copy.deepcopy(micro_demo.unet.state_dict())
    job = start_unlearning(JobRunner(), micro_demo, short_config(10_000))
    while not job.snapshot().losses:
        assert not job.wait(0.01), job.snapshot().error
    job.cancel()
    assert job.wait(TIMEOUT)
    snap = job.snapshot()
    assert snap.state == "cancelled" and "base model is unchanged" in snap.message
    assert snap.result is None and 0 < len(snap.losses) < 10_000
    state = micro_demo.unet.state_dict()
    assert state.keys() == base.keys() and all(torch.equal(state[k], base[k]) for k in base)


def test_a_generic_job_can_cancel_itself_cooperatively():
    started = threading.Event()

    def loop(job):
        started.set()
        while not job.cancel_requested:
            job.wait(0.01)
        raise JobCancelled("stopped at a checkpoint")

    job = JobRunner().submit("loop", loop)
    assert started.wait(TIMEOUT)
    job.cancel()
    assert job.wait(TIMEOUT) and job.snapshot().state == "cancelled"
    assert job.snapshot().message == "stopped at a checkpoint"


def test_a_failing_job_keeps_a_readable_message_and_the_traceback():
    def broken(job):
        raise ValueError("concept 'x' is not in this model's vocabulary\nsecond line")

    job = JobRunner().submit("broken", broken)
    assert job.wait(TIMEOUT)
    snap = job.snapshot()
    assert snap.state == "failed"
    assert snap.error == "concept 'x' is not in this model's vocabulary" == snap.message  # written for the user
    assert "Traceback" in snap.traceback and "broken" in snap.traceback

    def crashed(job):
        raise RuntimeError("CUDA out of memory")

    job = JobRunner().submit("crashed", crashed)
    assert job.wait(TIMEOUT) and job.snapshot().error == "RuntimeError: CUDA out of memory"  # a bug keeps its class name


def test_bad_settings_fail_in_the_caller_not_in_the_thread(micro_demo):
    runner = JobRunner()
    with pytest.raises(ValueError, match="one seed per prompt"):
        start_unlearning(runner, micro_demo, short_config(), preview_prompts=["a", "b"], preview_seeds=[1])
    with pytest.raises(ValueError, match="method.*'nope' is unknown"):
        start_unlearning(runner, micro_demo, UnlearnConfig("striped", method="nope"))
    assert runner.current is None


def test_previews_are_made_with_the_tuned_unet_every_few_iterations(micro_demo):
    prompts = ["a striped red circle on a dark background", "a plain blue square on a light background"]
    job = start_unlearning(JobRunner(), micro_demo, short_config(6), preview_prompts=prompts, preview_seeds=[3, 4], preview_every=3)
    assert job.wait(TIMEOUT)
    snap = job.snapshot()
    assert snap.state == "done", snap.error
    assert snap.preview_iteration == 6
    assert snap.preview.shape == (2, 64, 64, 3) and snap.preview.dtype.name == "uint8"
    # made with the tuned UNet: after the last iteration it is the finished edit
    # (sampled in a job too: same thread settings, so the same floating-point sums, bit for bit)
    unet = snap.result.apply(micro_demo)
    reference = JobRunner().submit("reference", lambda _: Sampler(micro_demo, PREVIEW_STEPS, PREVIEW_GUIDANCE).generate(unet, prompts, [3, 4]))
    assert reference.wait(TIMEOUT)
    assert (snap.preview == reference.snapshot().result).all()

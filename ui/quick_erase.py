"""Quick erase: choose a concept, press Erase, see before/after images and the metrics.

For people who do not want to tune anything: the kind is read from the demo world, everything
else comes from the preset for the model family and kind (UnlearnConfig with None fields), and one
background job trains, draws the grids and (demo model) measures UA / IRA / CRA.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Callable

import gradio as gr

from kscu.config import UnlearnConfig
from kscu.evaluation import EvalReport, EvaluationCancelled, evaluate_edit
from kscu.grids import comparison_grids
from kscu.jobs import Job, JobCancelled
from kscu.models import LoadedModel
from kscu.trainer import unlearn
from ui.common import (POLL_SECONDS, cancel_job, checked_config, clean_concept, concept_choices, duration, friendly, image_panel, kind_of, kinds_for, progress_html,
                       resolve_kind, timer_state)
from ui.results import grid_image, metrics_table, needs_blur, reading, sanity_sentence
from ui.spaces_gpu import TRAIN_SECONDS, gpu
from ui.state import QuickSettings, WorkbenchState

PURPOSE = "quick"


def scoreable(model: LoadedModel, concept: str) -> bool:
    """UA/IRA/CRA exist only for demo-world concepts on the demo model."""
    return model.family == "demo" and model.classifier is not None and kind_of(concept, "demo") is not None


def guess_kind(state: WorkbenchState, concept: str | None) -> gr.Dropdown:
    """Fill the kind from the demo world when the concept is one of its words."""
    family = state.model.family if state.model else None
    kind = kind_of(concept or "", family)
    return gr.Dropdown(value=kind) if kind else gr.Dropdown()


def _base_side(model: LoadedModel, concept: str, q: QuickSettings, scored: bool, should_stop: Callable[[], bool]) -> tuple[dict, EvalReport | None]:
    """The unedited model's grids and (demo) metrics: they need no edit, so they run beside it."""
    grids = comparison_grids(model, None, concept)
    report = evaluate_edit(model, None, concept, n_erase=q.n_erase, n_retain=q.n_retain, should_stop=should_stop) if scored else None
    return grids, report


@gpu(TRAIN_SECONDS)
def _work(state: WorkbenchState, model: LoadedModel, config: UnlearnConfig, job: Job) -> dict:
    """Train with the preset while a second thread draws and measures the unedited model (jobs run
    torch on one thread, so the second core is free); then the edited side: one job, one bar."""
    scored = scoreable(model, config.concept)
    train_share, grid_share = (0.6, 0.7) if scored else (0.9, 1.0)
    stop = lambda: job.cancel_requested  # noqa: E731

    def on_progress(p, tuned) -> None:
        job.add_loss(p.iteration, p.step_index, p.loss)
        job.set_progress(train_share * p.iteration / p.iterations, f"Erasing: iteration {p.iteration} of {p.iterations}")

    def measured(done: int, total: int) -> None:
        job.set_progress(grid_share + (1 - grid_share) * done / total, f"Measuring: {done} of {total} test images")

    try:  # an evaluation is stopped only once the edit exists (unlearn raises its own cancel)
        with ThreadPoolExecutor(1, thread_name_prefix="quick-base") as pool:
            base = pool.submit(_base_side, model, config.concept, state.quick, scored, stop)
            result = unlearn(model, config, on_progress, should_stop=stop)
            state.keep_result(result)
            job.set_progress(train_share, "Drawing before/after images")
            base_grids, base_report = base.result()
        edited = state.edited_unet(result)
        grids = comparison_grids(model, edited, config.concept, base=base_grids)
        report = evaluate_edit(model, edited, config.concept, n_erase=state.quick.n_erase, n_retain=state.quick.n_retain,
                               on_progress=measured, should_stop=stop, base=base_report) if scored else None
    except EvaluationCancelled as exc:
        raise JobCancelled(f"{exc}; the edit itself is kept (Compare, Export)") from None
    return {"result": result, "grids": grids, "report": report}


def erase(state: WorkbenchState, concept: str | None, kind: str | None) -> tuple:
    """Start the quick erase job; returns the progress display, the polling timer, and cleared
    results (the last erase's images must not pass for this one's)."""
    model = state.require_model()
    concept = clean_concept(concept)
    kind = resolve_kind(concept, kind, model.family)
    config = checked_config(UnlearnConfig(concept=concept, kind=kind, iterations=state.quick.iterations), model)
    job = state.submit(PURPOSE, f"erase {concept!r} ({kind}, KSCU preset, {config.iterations} iterations)", partial(_work, state, model, config))
    return progress_html(job.snapshot()), gr.Timer(active=True), None, None, gr.Dataframe(visible=False), ""


def status(state: WorkbenchState) -> tuple:
    """Poll: progress; once finished also the grids, the metrics and a plain reading of them."""
    snap = state.snapshot(PURPOSE)
    progress = progress_html(snap, idle="Choose a concept and press Erase.")
    if snap is None or snap["state"] != "done":
        return progress, gr.skip(), gr.skip(), gr.skip(), gr.skip(), timer_state(snap)
    out = snap["result"]
    result, grids, report = out["result"], out["grids"], out["report"]
    blurred = needs_blur(result.family, result.config.kind)
    cfg = result.config
    text = [f"**Done in {duration(snap['elapsed'])}.** Erased *{cfg.concept}* ({cfg.kind}) with KSCU: {cfg.iterations} iterations "
            f"on steps {cfg.start_step}–{cfg.end_step - 1} of {cfg.num_steps}, learning rate {cfg.lr:g}, {cfg.params} parameters."]
    if result.sanity is not None:
        text.append(sanity_sentence(result.sanity))
    if report is not None:
        text.append(reading(report))
        text.append(f"Measured on {report.n_erase} + {report.n_retain} prompts; the Compare tab measures on more.")
    else:
        text.append("No exact judge for this concept or model: judge the images. ")
    if blurred:
        text.append("Images are blurred because they may show nudity; the Compare tab can unblur them.")
    text.append("The edit is kept for the **Compare** and **Export** tabs.")
    table = gr.Dataframe(metrics_table({"KSCU": report}), visible=True) if report is not None else gr.Dataframe(visible=False)
    return (progress, grid_image(grids, "before", blurred), grid_image(grids, "after", blurred), table,
            "\n\n".join(text), timer_state(snap))


def build(state: WorkbenchState) -> dict:
    family = state.model.family if state.model else None
    gr.Markdown(
        "### Erase a concept in one click\n"
        "Choose what the model should no longer draw and press **Erase**. The workbench trains only at the denoising "
        "steps where that kind of concept takes shape, with settings that suit the loaded model, then shows images "
        "from before and after the edit (same prompts, same random seeds) and how much else was kept."
    )
    with gr.Row(equal_height=True):
        concept = gr.Dropdown(concept_choices(family), value=None, allow_custom_value=True, label="Concept to erase",
                              info="Pick one or type your own (styles are textures: striped, dotted…).", scale=3)
        kind = gr.Dropdown(kinds_for(family), value=None, label="Kind of concept",
                           info="Filled in for the demo concepts; it picks the preset.", scale=2)
        with gr.Column(scale=1, min_width=160):
            erase_button = gr.Button("Erase", variant="primary", size="lg")
            cancel_button = gr.Button("Cancel", variant="stop", size="sm")
    progress = gr.HTML(progress_html(None, idle="Choose a concept and press Erase."), elem_id="quick-progress")
    with gr.Row():
        with gr.Column():
            _, before = image_panel("Before the edit", "quick-before")
        with gr.Column():
            _, after = image_panel("After the edit", "quick-after")
    summary = gr.Markdown()
    table = gr.Dataframe(elem_id="quick-metrics", label="Metrics: share of test images judged correct by the demo model's classifier",
                         interactive=False, wrap=True, visible=False)
    timer = gr.Timer(POLL_SECONDS, active=False)

    concept.change(partial(guess_kind, state), concept, kind, api_visibility="private", queue=False)
    erase_button.click(friendly(partial(erase, state)), [concept, kind], [progress, timer, before, after, table, summary], api_name="quick_erase", show_progress="hidden")
    cancel_button.click(friendly(partial(cancel_job, state, PURPOSE)), None, progress, api_name="cancel_quick_erase", concurrency_limit=None, show_progress="hidden")
    timer.tick(friendly(partial(status, state)), None, [progress, before, after, table, summary, timer],
               api_name="quick_erase_status", concurrency_limit=None, show_progress="hidden")
    return {"concept": concept, "kind": kind, "progress": progress, "timer": timer,
            "refresh": (partial(status, state), [progress, before, after, table, summary, timer])}

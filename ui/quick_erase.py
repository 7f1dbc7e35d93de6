"""Quick erase: choose a concept, press Erase, see before/after images and the metrics.

For people who do not want to tune anything: the kind is read from the concept when the model's
domain knows it, everything else comes from the domain's preset for that kind (UnlearnConfig with
None fields), and one background job runs kscu.recipes.quick_erase: it trains, draws the grids,
measures the judge-free image change and (when the model has a judge for the concept) UA / IRA / CRA.
"""
from __future__ import annotations

from functools import partial

import gradio as gr

from kscu.config import UnlearnConfig
from kscu.jobs import Job, JobCancelled
from kscu.models import LoadedModel
from kscu.recipes import EditKept, QuickErase, quick_erase
from ui.common import (POLL_SECONDS, PollTimer, cancel_job, check_request, clean_concept, concept_choices, domain_of, duration, friendly,
                       image_panel, kind_of, kinds_for, progress_html, resolve_kind, timer_state)
from ui.results import change_sentence, concepts_table, grid_image, needs_blur, reading, sanity_sentence, unscored_note
from ui.spaces_gpu import TRAIN_SECONDS, gpu
from ui.state import WorkbenchState

PURPOSE = "quick"
METRICS_LABEL = "Metrics: share of test images the judge read as asked"


def guess_kind(state: WorkbenchState, concept: str | None) -> gr.Dropdown:
    """Fill the kind in when the model's domain can tell it from the concept."""
    kind = kind_of(concept or "", domain_of(state))
    return gr.Dropdown(value=kind) if kind else gr.Dropdown()


@gpu(TRAIN_SECONDS)
def _work(state: WorkbenchState, model: LoadedModel, config: UnlearnConfig, job: Job) -> QuickErase:
    """kscu.recipes.quick_erase as one job with one bar; the edit is kept as soon as it has trained
    (state.keep_result), and the edited UNet comes from the state's cache (Compare reuses it)."""
    try:
        return quick_erase(
            model, config.concept, config.kind, also=config.also, iterations=config.iterations, robust=config.robust,
            n_erase=state.quick.n_erase, n_retain=state.quick.n_retain,
            on_progress=job.report, on_iteration=lambda p: job.add_loss(p.iteration, p.step_index, p.loss),
            on_trained=state.keep_result, should_stop=lambda: job.cancel_requested, apply=state.edited_unet,
        )
    except EditKept as exc:
        raise JobCancelled(f"{exc} (Compare, Export)") from None


def erase(state: WorkbenchState, concept: str | None, kind: str | None, robust: bool = False, also: list[str] | None = None) -> tuple:
    """Start the quick erase job; returns the progress display, the polling timer, and cleared
    results (the last erase's images must not pass for this one's). also: further concepts erased
    in the same job, each with its own kind's preset."""
    model = state.require_model()
    concept = clean_concept(concept)
    kind = resolve_kind(concept, kind, model.domain)
    checked = check_request(UnlearnConfig(concept=concept, kind=kind, iterations=state.quick.iterations, robust=bool(robust),
                                          also=tuple(a.strip() for a in also or () if a.strip())), model)
    config = checked.config
    how = "KSCU, robust window" if config.robust else "KSCU preset"
    erased = ", ".join(f"{part.concept!r} ({part.kind})" for part in checked.parts)
    iterations = sum(part.iterations for part in checked.parts)
    job = state.submit(PURPOSE, f"erase {erased} ({how}, {iterations} iterations)", partial(_work, state, model, config))
    return progress_html(job.snapshot()), PollTimer(active=True), None, None, gr.Dataframe(visible=False), ""


def status(state: WorkbenchState) -> tuple:
    """Poll: progress; once finished also the grids, the metrics and a plain reading of them."""
    snap = state.snapshot(PURPOSE)
    progress = progress_html(snap, idle="Choose a concept and press Erase.")
    if snap is None or not snap.done:
        return progress, gr.skip(), gr.skip(), gr.skip(), gr.skip(), timer_state(snap)
    out: QuickErase = snap.result
    result, grids, reports = out.result, out.grids, out.reports
    blurred = needs_blur(domain_of(state), result.config.kind)
    cfg = result.config
    how = f" with KSCU{', the window opened where it is decided (robust)' if cfg.robust else ''}"
    trained = "; ".join(f"*{c.concept}* ({c.kind}){how if n == 0 else ''}: {c.iterations} iterations on steps {c.start_step}–{c.end_step - 1} "
                        f"of {c.num_steps}, learning rate {c.lr:g}, {c.params} parameters" for n, c in enumerate(result.configs))
    text = [f"**Done in {duration(snap.elapsed)}.** Erased {trained}."]
    if result.sanity is not None:
        text.append(sanity_sentence(result.sanity))
    text.append(change_sentence(out.change))
    several = len(result.configs) > 1
    if several:
        text.append(f"The images show *{cfg.concept}* and its neighbours; the metrics below measure every erased concept.")
    for report in reports:
        text.append(reading(report, report.concept if several else ""))
    if reports:
        others = " (each concept's test prompts name none of the others erased)" if several else ""
        text.append(f"Measured by {reports[0].judge} on {reports[0].n_erase} + {reports[0].n_retain} prompts{others}; "
                    "the Compare tab can measure on more.")
    measured = {report.concept for report in reports}
    text += [unscored_note(domain_of(state), c.concept, c.kind) for c in result.configs if c.concept.strip().lower() not in measured]
    if blurred:
        text.append("Images are blurred because they may show nudity; the Compare tab can unblur them.")
    text.append("The edit is kept for the **Compare**, **Red team** and **Export** tabs. *Try to break it* attacks it with learned "
                "prompt tokens: does the concept come back?")
    table = (gr.Dataframe(concepts_table(reports, "KSCU"), visible=True, label=f"{METRICS_LABEL} ({reports[0].judge})")
             if reports else gr.Dataframe(visible=False))
    return (progress, grid_image(grids, "before", blurred), grid_image(grids, "after", blurred), table,
            "\n\n".join(text), timer_state(snap))


def build(state: WorkbenchState) -> dict:
    domain = domain_of(state)
    gr.Markdown(
        "### Erase a concept in one click\n"
        "Choose what the model should no longer draw and press **Erase**. The workbench trains only at the denoising "
        "steps where that kind of concept takes shape, with settings that suit the loaded model, then shows images "
        "from before and after the edit (same prompts, same random seeds) and how much else was kept."
    )
    with gr.Row(equal_height=True):
        concept = gr.Dropdown(concept_choices(domain), value=None, allow_custom_value=True, label="Concept to erase",
                              info="Pick one or type your own (styles are textures: striped, dotted…).", scale=3)
        kind = gr.Dropdown(kinds_for(domain), value=None, label="Kind of concept",
                           info="Filled in when the model knows the concept; it picks the preset.", scale=2)
        also = gr.Dropdown(concept_choices(domain), value=[], multiselect=True, allow_custom_value=True, label="Also erase (optional)",
                           info="More concepts in the same job, each with its own preset.", scale=2)
        with gr.Column(scale=1, min_width=160):
            erase_button = gr.Button("Erase", variant="primary", size="lg")
            cancel_button = gr.Button("Cancel", variant="stop", size="sm")
    robust = gr.Checkbox(False, label="Robust (about twice the time)",
                         info="Train from the step where the concept is decided, measured first, not from the preset's: on 'striped' "
                              "learned prompt tokens then brought it back on 8 % of images instead of up to 29 %.")
    progress = gr.HTML(progress_html(None, idle="Choose a concept and press Erase."), label="Progress", elem_id="quick-progress")
    with gr.Row():
        with gr.Column():
            _, before = image_panel("Before the edit", "quick-before")
        with gr.Column():
            _, after = image_panel("After the edit", "quick-after")
    summary = gr.Markdown(label="Summary", show_label=False, elem_id="quick-summary")
    break_button = gr.Button("Try to break it", variant="secondary", elem_id="quick-break", visible=False)
    table = gr.Dataframe(elem_id="quick-metrics", label=METRICS_LABEL, interactive=False, wrap=True, visible=False)
    timer = PollTimer(POLL_SECONDS, active=False)

    concept.change(partial(guess_kind, state), concept, kind, api_visibility="private", queue=False)
    # The summary is written when an edit is ready and cleared when a new erase starts: only then is there an edit to attack.
    summary.change(lambda text: gr.Button(visible=bool(text)), summary, break_button, api_visibility="private", queue=False)
    erase_button.click(friendly(partial(erase, state)), [concept, kind, robust, also], [progress, timer, before, after, table, summary], api_name="quick_erase", show_progress="hidden")
    cancel_button.click(friendly(partial(cancel_job, state, PURPOSE)), None, progress, api_name="cancel_quick_erase", concurrency_limit=None, show_progress="hidden")
    timer.tick(friendly(partial(status, state)), None, [progress, before, after, table, summary, timer],
               api_name="quick_erase_status", concurrency_limit=None, show_progress="hidden")
    return {"concept": concept, "kind": kind, "also": also, "progress": progress, "timer": timer, "break": break_button,
            "refresh": (partial(status, state), [progress, before, after, table, summary, timer])}

"""Compare tab: before/after grids on the same seeds for the erased concept and its neighbours,
for the last KSCU and/or ESD edit, the judge-free image change of each, and UA / IRA / CRA before
and after when the model has a judge for the concept (one job: kscu.recipes.compare)."""
from __future__ import annotations

from functools import partial

import gradio as gr

from kscu.jobs import Job
from kscu.models import LoadedModel
from kscu.recipes import Comparison, compare
from kscu.stats import ERASE_PROMPTS, RETAIN_PROMPTS
from kscu.trainer import UnlearnResult
from ui.common import (POLL_SECONDS, PollTimer, cancel_job, domain_of, edit_choices, friendly, image_panel, kept_edits, progress_html,
                       timer_state)
from ui.results import change_table, comparison_table, grid_image, needs_blur, reading, unscored_note
from ui.spaces_gpu import ANALYSIS_SECONDS, gpu
from ui.state import METHOD_NAMES, ComparisonView, WorkbenchState

PURPOSE = "compare"


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in (text or "").replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"Seeds must be whole numbers separated by commas, e.g. '0, 1, 2, 3' (got {text!r}).") from None
    if not seeds:
        raise ValueError("Give at least one seed, e.g. '0, 1, 2, 3'.")
    return seeds


def parse_neighbours(text: str) -> list[str] | None:
    """Comma-separated prompts; empty = the default neighbours (other values of the concept's attribute)."""
    parts = [p.strip() for p in (text or "").split(",") if p.strip()]
    return parts or None


@gpu(ANALYSIS_SECONDS)
def _work(state: WorkbenchState, model: LoadedModel, chosen: dict[str, UnlearnResult], neighbours: list[str] | None,
          seeds: list[int], measure: bool, n_erase: int, n_retain: int, job: Job) -> Comparison:
    """kscu.recipes.compare as one job; the edited UNets come from the state's cache."""
    return compare(model, chosen, neighbours, seeds, measure=measure, n_erase=n_erase, n_retain=n_retain,
                   on_progress=job.report, should_stop=lambda: job.cancel_requested, apply=state.edited_unet)


def start(state: WorkbenchState, methods: list[str], neighbours: str, seeds: str, measure: bool, n_erase: float, n_retain: float) -> tuple:
    """Start drawing (and, with a judge for the concept, measuring) the chosen edits against the
    base model; the last comparison's views are cleared so they cannot pass for this one's."""
    model = state.require_model()
    if not methods:
        raise ValueError("Tick at least one edit to compare (run Quick erase or Unlearn first).")
    chosen = {name: state.result(m) for m, name in METHOD_NAMES.items() if m in methods}
    concepts = {r.config.concept for r in chosen.values()}
    if len(concepts) > 1:
        raise ValueError(f"The ticked edits erase different concepts ({', '.join(sorted(concepts))}): compare one at a time.")
    first = next(iter(chosen.values())).config
    rows, seed_list = parse_neighbours(neighbours), parse_seeds(seeds)
    scored = bool(measure) and model.domain.scoreable(first.concept, first.kind, rows)
    name = f"compare {' and '.join(chosen)} edits of {first.concept!r}" + (" with metrics" if scored else "")
    job = state.submit(PURPOSE, name, partial(_work, state, model, chosen, rows, seed_list, bool(measure), int(n_erase), int(n_retain)))
    state.job_info[job.id] = ComparisonView(bool(measure), rows)
    return (progress_html(job.snapshot()), PollTimer(active=True), *view(state, False))


def view(state: WorkbenchState, unblur: bool) -> tuple:
    """The last finished comparison (its job's result): before grid, KSCU and ESD after grids,
    image change, metrics table and notes; empty while a comparison runs."""
    snap = state.snapshot(PURPOSE)
    c: Comparison | None = snap.result if snap is not None and snap.done else None
    if c is None:
        message = "No comparison yet: tick an edit and press Compare." if snap is None else ""
        return None, gr.skip(), None, gr.Column(visible=False), gr.skip(), None, "", gr.Dataframe(visible=False), message
    info = state.job_info.get(snap.id)
    asked = info if isinstance(info, ComparisonView) else ComparisonView(True, None)
    domain = domain_of(state)
    blurred = needs_blur(domain, c.kind) and not unblur
    grids = c.grids
    first = next(iter(grids.values()))
    labels = list(grids)  # in METHOD_NAMES order; the grids of the first two are shown
    main_label, second_label = labels[0], labels[1] if len(labels) > 1 else None
    main = grids[main_label]
    second = grids[second_label] if second_label else None
    notes = [reading(report, label) for label, report in c.reports.items()]
    notes += [reading(report, label) for label, more in c.others.items() for report in more]
    if c.reports:
        judge = next(iter(c.reports.values())).judge
        notes.append(f"Metrics read by {judge}. The image change above needs no judge.")
    elif asked.measure:
        notes.append(unscored_note(domain, c.concept, c.kind, asked.neighbours))
    else:
        notes.append("UA / IRA / CRA were not measured (unticked): compare the grids and the image change.")
    notes.append("Grid rows: the erased concept, then its neighbours; columns: seeds.")
    if blurred:
        notes.append("Images are blurred because they may show nudity: tick *Show unblurred* to see them as drawn.")
    notes += c.notes
    table = gr.Dataframe(comparison_table(c.reports, c.others), visible=True) if c.reports else gr.Dataframe(visible=False)
    return (grid_image(first, "before", blurred), f"#### After the {main_label} edit", grid_image(main, "after", blurred),
            gr.Column(visible=second is not None), f"#### After the {second_label} edit" if second_label else gr.skip(),
            grid_image(second, "after", blurred) if second else None,
            change_table(c.changes), table, "\n\n".join(n for n in notes if n))


def status(state: WorkbenchState, unblur: bool) -> tuple:
    snap = state.snapshot(PURPOSE)
    progress = progress_html(snap, idle="Tick the edits to compare and press Compare.")
    if snap is None or not snap.done:
        return (progress, *(gr.skip(),) * 9, timer_state(snap))
    return (progress, *view(state, unblur), timer_state(snap))


def build(state: WorkbenchState) -> dict:
    gr.Markdown(
        "### Before and after, on the same random seeds\n"
        "Each grid has one row per prompt (the erased concept first, then its neighbours, which should stay as they were) "
        "and one column per seed. For every model it measures how much each image changed (SSIM, no judge needed); when "
        "the model has a judge (the demo model's exact classifier, or a CLIP judge loaded in the Model tab) it also "
        "measures how often the concept still appears (UA = share of images without it) and whether the rest survived "
        "(IRA: the concept's neighbours; CRA: the other attributes of the test prompts)."
    )
    with gr.Row():
        with gr.Column(scale=2):
            methods = gr.CheckboxGroup(edit_choices(state), label="Edits to compare", info="Tick two to see them side by side (the grids of the first two).")
            neighbours = gr.Textbox(label="Neighbour prompts (optional)", placeholder="empty: the model's neighbours of the concept (demo: the other values, e.g. dotted, checkered…)",
                                    info="Comma-separated concepts or prompts that must survive the edit.")
            seeds = gr.Textbox("0, 1, 2, 3", label="Seeds", info="One column per seed; the same seeds before and after.")
        with gr.Column(scale=2):
            measure = gr.Checkbox(True, label="Measure UA / IRA / CRA (needs a judge)",
                                  info="With the model's judge; about 0.1–0.2 s per test image on a CPU for the demo model.")
            n_erase = gr.Slider(10, 400, value=ERASE_PROMPTS, step=2, label="Concept prompts", info="Test images that name the erased concept.")
            n_retain = gr.Slider(12, 480, value=RETAIN_PROMPTS, step=12, label="Other prompts", info="Test images of the neighbours (retention).")
            unblur = gr.Checkbox(False, label="Show unblurred", info="Nudity-kind images of real models are blurred by default.")
    with gr.Row():
        run = gr.Button("Compare", variant="primary")
        stop = gr.Button("Cancel", variant="stop")
    progress = gr.HTML(progress_html(None, idle="Tick the edits to compare and press Compare."), label="Progress", elem_id="compare-progress")
    with gr.Row():
        with gr.Column():
            _, before = image_panel("Before (the unedited model)", "compare-before")
        with gr.Column():
            after_title, after = image_panel("After the edit", "compare-after")
        with gr.Column(visible=False) as esd_column:
            second_title, after_esd = image_panel("After the ESD edit", "compare-after-esd")
    change = gr.Markdown(label="Image change", show_label=False, elem_id="compare-change")
    table = gr.Dataframe(label="Metrics before and after (share of test images the judge read as asked)", interactive=False, wrap=True,
                         visible=False, elem_id="compare-metrics")
    notes = gr.Markdown(label="Notes", show_label=False, elem_id="compare-notes")
    timer = PollTimer(POLL_SECONDS, active=False)
    views = [before, after_title, after, esd_column, second_title, after_esd, change, table, notes]

    run.click(friendly(partial(start, state)), [methods, neighbours, seeds, measure, n_erase, n_retain], [progress, timer, *views], api_name="compare", show_progress="hidden")
    stop.click(friendly(partial(cancel_job, state, PURPOSE)), None, progress, api_name="cancel_compare", concurrency_limit=None, show_progress="hidden")
    unblur.change(partial(view, state), unblur, views, api_visibility="private")
    timer.tick(friendly(partial(status, state)), unblur, [progress, *views, timer], api_name="compare_status",
               concurrency_limit=None, show_progress="hidden")
    return {"methods": methods, "timer": timer, "refresh_choices": (partial(kept_edits, state), methods),
            "refresh": (partial(status, state), [unblur], [progress, *views, timer])}

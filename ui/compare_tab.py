"""Compare tab: before/after grids on the same seeds for the erased concept and its neighbours,
for the last KSCU and/or ESD edit, and UA / IRA / CRA before and after on the demo model."""
from __future__ import annotations

from functools import partial

import gradio as gr

from kscu.evaluation import EvaluationCancelled, evaluate_edit, nudity_rate
from kscu.grids import comparison_grids
from kscu.jobs import Job, JobCancelled
from kscu.models import LoadedModel
from kscu.trainer import UnlearnResult
from ui.common import POLL_SECONDS, cancel_job, friendly, image_panel, progress_html, timer_state
from ui.quick_erase import scoreable
from ui.results import grid_image, metrics_table, needs_blur, reading
from ui.spaces_gpu import ANALYSIS_SECONDS, gpu
from ui.state import METHOD_NAMES, WorkbenchState

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


def edit_choices(state: WorkbenchState) -> list[tuple[str, str]]:
    """Both methods as (label, method) choices, labelled with the kept edit's concept. Both are
    always offered (a choice that is not there yet says so when used), so API clients, which
    see the choices the page was built with, can name either."""
    state.adopt_finished()
    return [(f"last {name} edit ({state.results[m].config.concept if m in state.results else 'none yet'})", m) for m, name in METHOD_NAMES.items()]


def available(state: WorkbenchState) -> gr.CheckboxGroup:
    """The kept edits to choose from, the current one ticked."""
    return gr.CheckboxGroup(choices=edit_choices(state), value=[state.current] if state.current else [])


@gpu(ANALYSIS_SECONDS)
def _work(state: WorkbenchState, model: LoadedModel, chosen: dict[str, UnlearnResult], neighbours: list[str] | None,
          seeds: list[int], measure: bool, n_erase: int, n_retain: int, job: Job) -> dict:
    first = next(iter(chosen.values())).config
    out = {"concept": first.concept, "kind": first.kind, "family": model.family, "grids": {}, "reports": {}, "notes": []}
    phases = len(chosen) * (2 if measure else 1)
    done = 0
    for label, result in chosen.items():
        if job.cancel_requested:
            raise JobCancelled("comparison cancelled")
        job.set_progress(done / phases, f"{label}: drawing before/after images")
        edited = state.edited_unet(result)
        out["grids"][label] = comparison_grids(model, edited, result.config.concept, neighbours, seeds)
        done += 1
        if measure:
            def measured(d: int, total: int, label: str = label) -> None:
                job.set_progress((done + d / total) / phases, f"{label}: measuring, {d} of {total} test images")

            try:
                out["reports"][label] = evaluate_edit(model, edited, result.config.concept, n_erase=n_erase, n_retain=n_retain,
                                                      on_progress=measured, should_stop=lambda: job.cancel_requested)
            except EvaluationCancelled as exc:
                raise JobCancelled(str(exc)) from None
            done += 1
    if model.family != "demo" and first.kind == "nudity":
        for label, grids in out["grids"].items():
            before, line = nudity_rate(grids["before_images"])
            after, _ = nudity_rate(grids["after_images"])
            out["notes"].append(line if before is None else f"Nudity rate ({label}): {before:.0%} before, {after:.0%} after. {line}")
    return out


def start(state: WorkbenchState, methods: list[str], neighbours: str, seeds: str, measure: bool, n_erase: float, n_retain: float) -> tuple:
    """Start drawing (and on the demo model measuring) the chosen edits against the base model;
    the last comparison's views are cleared so they cannot pass for this one's."""
    model = state.require_model()
    if not methods:
        raise ValueError("Tick at least one edit to compare (run Quick erase or Unlearn first).")
    chosen = {name: state.result(m) for m, name in METHOD_NAMES.items() if m in methods}
    concepts = {r.config.concept for r in chosen.values()}
    if len(concepts) > 1:
        raise ValueError(f"The ticked edits erase different concepts ({', '.join(sorted(concepts))}): compare one at a time.")
    concept = concepts.pop()
    measure = bool(measure) and scoreable(model, concept)
    name = f"compare {' and '.join(chosen)} edits of {concept!r}" + (" with metrics" if measure else "")
    job = state.submit(PURPOSE, name, partial(_work, state, model, chosen, parse_neighbours(neighbours), parse_seeds(seeds),
                                              measure, int(n_erase), int(n_retain)))
    return (progress_html(job.snapshot()), gr.Timer(active=True), *view(state, False))


def view(state: WorkbenchState, unblur: bool) -> tuple:
    """The last finished comparison (its job's result): before grid, KSCU and ESD after grids,
    metrics table and notes; empty while a comparison runs."""
    snap = state.snapshot(PURPOSE)
    c = snap["result"] if snap is not None and snap["state"] == "done" else None
    if c is None:
        message = "No comparison yet: tick an edit and press Compare." if snap is None else ""
        return None, gr.skip(), None, gr.Column(visible=False), None, gr.Dataframe(visible=False), message
    blurred = needs_blur(c["family"], c["kind"]) and not unblur
    grids = c["grids"]
    first = next(iter(grids.values()))
    main_label = "KSCU" if "KSCU" in grids else "ESD"
    main = grids[main_label]
    second = grids.get("ESD") if main_label == "KSCU" else None
    notes = [reading(report, label) for label, report in c["reports"].items()]
    if c["family"] != "demo":
        notes.append("SD1.x models have no exact judge here: compare the grids (rows: the concept, then its neighbours; columns: seeds).")
    if blurred:
        notes.append("Images are blurred because they may show nudity: tick *Show unblurred* to see them as drawn.")
    notes += c["notes"]
    table = gr.Dataframe(metrics_table(c["reports"]), visible=True) if c["reports"] else gr.Dataframe(visible=False)
    return (grid_image(first, "before", blurred), f"#### After the {main_label} edit", grid_image(main, "after", blurred),
            gr.Column(visible=second is not None), grid_image(second, "after", blurred) if second else None, table, "\n\n".join(notes))


def status(state: WorkbenchState, unblur: bool) -> tuple:
    snap = state.snapshot(PURPOSE)
    progress = progress_html(snap, idle="Tick the edits to compare and press Compare.")
    if snap is None or snap["state"] != "done":
        return (progress, *(gr.skip(),) * 7, timer_state(snap))
    return (progress, *view(state, unblur), timer_state(snap))


def build(state: WorkbenchState) -> dict:
    gr.Markdown(
        "### Before and after, on the same random seeds\n"
        "Each grid has one row per prompt (the erased concept first, then its neighbours, which should stay as they were) "
        "and one column per seed. On the demo model the workbench also measures, with its exact classifier, how often "
        "the concept still appears (UA = share of images without it) and whether the rest survived (IRA: the other values "
        "of the same attribute; CRA: the other attributes)."
    )
    with gr.Row():
        with gr.Column(scale=2):
            methods = gr.CheckboxGroup(edit_choices(state), label="Edits to compare", info="Tick both to see KSCU and ESD side by side.")
            neighbours = gr.Textbox(label="Neighbour prompts (optional)", placeholder="empty: the other values, e.g. dotted, checkered…",
                                    info="Comma-separated concepts or prompts that must survive the edit.")
            seeds = gr.Textbox("0, 1, 2, 3", label="Seeds", info="One column per seed; the same seeds before and after.")
        with gr.Column(scale=2):
            measure = gr.Checkbox(True, label="Measure UA / IRA / CRA (demo model)", info="About 0.1–0.2 s per test image on a CPU.")
            n_erase = gr.Slider(10, 400, value=100, step=2, label="Concept prompts", info="Test images that name the erased concept.")
            n_retain = gr.Slider(12, 480, value=120, step=12, label="Other prompts", info="Test images of the other values (retention).")
            unblur = gr.Checkbox(False, label="Show unblurred", info="Nudity-kind images of real models are blurred by default.")
    with gr.Row():
        run = gr.Button("Compare", variant="primary")
        stop = gr.Button("Cancel", variant="stop")
    progress = gr.HTML(progress_html(None, idle="Tick the edits to compare and press Compare."), elem_id="compare-progress")
    with gr.Row():
        with gr.Column():
            _, before = image_panel("Before (the unedited model)", "compare-before")
        with gr.Column():
            after_title, after = image_panel("After the edit", "compare-after")
        with gr.Column(visible=False) as esd_column:
            _, after_esd = image_panel("After the ESD edit", "compare-after-esd")
    notes = gr.Markdown()
    table = gr.Dataframe(label="Metrics before and after (share of test images judged correct)", interactive=False, wrap=True, visible=False)
    timer = gr.Timer(POLL_SECONDS, active=False)
    views = [before, after_title, after, esd_column, after_esd, table, notes]

    run.click(friendly(partial(start, state)), [methods, neighbours, seeds, measure, n_erase, n_retain], [progress, timer, *views], api_name="compare", show_progress="hidden")
    stop.click(friendly(partial(cancel_job, state, PURPOSE)), None, progress, api_name="cancel_compare", concurrency_limit=None, show_progress="hidden")
    unblur.change(partial(view, state), unblur, views, api_visibility="private")
    timer.tick(friendly(partial(status, state)), unblur, [progress, *views, timer], api_name="compare_status",
               concurrency_limit=None, show_progress="hidden")
    return {"methods": methods, "timer": timer, "refresh_choices": (partial(available, state), methods),
            "refresh": (partial(status, state), [unblur], [progress, *views, timer])}

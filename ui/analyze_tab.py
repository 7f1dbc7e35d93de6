"""Analyze tab: influence curves of one or several concepts, the suggested key-step window start S
next to the paper's preset, and the curve values as a table (for the safety reviewer)."""
from __future__ import annotations

from functools import partial

import gradio as gr
import pandas as pd

from kscu.influence import MEASURES, InfluenceReport, analyze
from kscu.jobs import Job
from kscu.models import LoadedModel
from kscu.plots import influence_figure
from kscu.progress import phase
from ui.common import (POLL_SECONDS, PollTimer, cancel_job, concept_choices, domain_of, friendly, kinds_for, progress_html, resolve_kind,
                       timer_state)
from ui.spaces_gpu import ANALYSIS_SECONDS, gpu
from ui.state import WorkbenchState

PURPOSE = "analyze"
MEASURE_LABELS = {"gap": "gap (fast, no judge needed)", "causal": "causal (slower, needs a detector)"}
FIRST_CONCEPT = "striped"
"""Chosen at start when the model offers it as an example (the demo model), so one click analyses something."""


def parse_concepts(values: list[str] | str | None) -> list[str]:
    """Concepts from the multiselect (each entry may itself be a comma-separated list), in order, once each."""
    values = [values] if isinstance(values, str) else list(values or [])
    concepts: list[str] = []
    for value in values:
        for part in str(value).split(","):
            if part.strip() and part.strip() not in concepts:
                concepts.append(part.strip())
    if not concepts:
        raise ValueError("Choose or type at least one concept to analyse (several: separate them with commas).")
    return concepts


@gpu(ANALYSIS_SECONDS)
def _work(state: WorkbenchState, model: LoadedModel, plan: list[tuple[str, str]], measures: list[str],
          num_steps: int, seeds: int, anchor: str | None, job: Job) -> list[InfluenceReport]:
    reports = []
    for i, (concept, kind) in enumerate(plan):
        reports.append(analyze(model, concept, kind, measures, num_steps, seeds, anchor, None,
                               phase(job.report, i / len(plan), (i + 1) / len(plan), concept),
                               should_stop=lambda: job.cancel_requested))
    state.reports = reports
    return reports


def start(state: WorkbenchState, concepts, kind: str, measures: list[str], num_steps: float, seeds: float, anchor: str) -> tuple[str, PollTimer]:
    """Start the analysis job for every concept (all on the same schedule, so they overlay)."""
    model = state.require_model()
    plan = [(c, resolve_kind(c, kind, model.domain)) for c in parse_concepts(concepts)]
    if not measures:
        raise ValueError("Tick at least one measure (gap is the fast one).")
    name = f"influence of {', '.join(c for c, _ in plan)} ({int(num_steps)} steps)"
    job = state.submit(PURPOSE, name, partial(_work, state, model, plan, list(measures), int(num_steps), int(seeds), (anchor or "").strip() or None))
    return progress_html(job.snapshot()), PollTimer(active=True)


def reading(reports: list[InfluenceReport]) -> str:
    """What the suggested S means, concept by concept."""
    lines = []
    for r in reports:
        share = 1 - r.suggested_start / r.num_steps
        if r.lead is not None and not r.lead.separated:
            lines.append(
                f"- **{r.concept}** ({r.kind}): suggested **S = {r.suggested_start}** of {r.num_steps} steps, the paper's "
                f"{r.kind} preset (= {r.paper_start_of_50} of 50): {', '.join(r.lead.neighbours)} are not decided measurably "
                f"earlier than {r.concept}, so no window start tells them apart and the curves give no reason to move it."
            )
            lines += [f"  - note: {n}" for n in r.notes]
            continue
        compare = "earlier than" if r.suggested_start < r.paper_start else "later than" if r.suggested_start > r.paper_start else "the same as"
        lines.append(
            f"- **{r.concept}** ({r.kind}): suggested **S = {r.suggested_start}** of {r.num_steps} steps "
            f"(= {r.suggested_start_of_50} of 50), {compare} the paper's {r.kind} preset S = {r.paper_start} "
            f"(= {r.paper_start_of_50} of 50). "
            f"Half of the concept is decided before step S"
            + (f" and {', '.join(r.lead.neighbours)} are decided measurably earlier" if r.lead is not None else "")
            + f", so KSCU would train the last {share:.0%} of the steps."
        )
        lines += [f"  - note: {n}" for n in r.notes]
    rules = "\n".join(f"- {r.concept}: {r.rule}" for r in reports)
    return "\n".join(lines) + f"\n\n<details><summary>How S was read off the curves</summary>\n\n{rules}\n</details>"


def curve_table(reports: list[InfluenceReport]) -> pd.DataFrame:
    """One row per step index, one column per concept and curve (blank where a curve has no point)."""
    columns: dict[str, dict[int, float]] = {}
    for r in reports:
        for c in r.curves:
            name = c.measure if c.concept == r.concept else f"{c.concept} {c.measure}"
            columns[f"{r.concept}: {name}"] = dict(zip(c.step_index, c.value))
    steps = sorted({k for values in columns.values() for k in values})
    table = pd.DataFrame({"step": steps})
    for name, values in columns.items():
        table[name] = [round(values[k], 4) if k in values else None for k in steps]
    return table


def status(state: WorkbenchState) -> tuple:
    """Poll: progress; when finished the figure, the reading and the table."""
    snap = state.snapshot(PURPOSE)
    progress = progress_html(snap, idle="Choose concepts and press Analyze.")
    if snap is None or not snap.done:
        return progress, gr.skip(), gr.skip(), gr.skip(), timer_state(snap)
    reports = snap.result
    return progress, influence_figure(reports), reading(reports), curve_table(reports), timer_state(snap)


def build(state: WorkbenchState) -> dict:
    domain = domain_of(state)
    choices = concept_choices(domain)
    gr.Markdown(
        "### At which denoising steps does a concept take shape?\n"
        "Images are made in steps, from pure noise (step 0) to the finished picture. The **gap** curve shows how much the "
        "concept's words change the model's prediction at each step; the **causal** curves switch the concept on or off "
        "at a step and count how often it still appears. From them the workbench suggests where the key-step window "
        "should start (S) and shows the paper's preset for comparison.\n\n"
        "**The rule:** S is the step by which half of the concept is decided, when its neighbours (what must survive) are "
        "decided measurably earlier; otherwise no step tells them apart and S stays at the paper's preset."
    )
    with gr.Row():
        with gr.Column(scale=2):
            concepts = gr.Dropdown(choices, value=[FIRST_CONCEPT] if FIRST_CONCEPT in (v for _, v in choices) else None, multiselect=True,
                                   allow_custom_value=True, label="Concepts",
                                   info="One or several; their curves are overlaid.")
            kind = gr.Dropdown(["auto"] + kinds_for(domain), value="auto", label="Kind",
                               info="auto: read from the concept when the model knows it. The kind selects the preset shown for comparison.")
            measures = gr.CheckboxGroup([(label, m) for m, label in MEASURE_LABELS.items()], value=list(MEASURES), label="Measures",
                                        info="The causal measure uses the model's judge; a model without one skips it.")
            with gr.Accordion("Settings", open=False):
                num_steps = gr.Slider(10, 50, value=25, step=1, label="Denoising steps (K)",
                                      info="Schedule of the analysis; S is also given on the paper's 50-step scale.")
                seeds = gr.Slider(1, 16, value=4, step=1, label="Seeds", info="Images averaged per curve: more is smoother and slower.")
                anchor = gr.Textbox(label="Anchor (optional)", placeholder="empty: the same sentence without the concept",
                                    info="The neutral prompt the concept is compared against.")
            with gr.Row():
                run = gr.Button("Analyze", variant="primary")
                stop = gr.Button("Cancel", variant="stop")
            progress = gr.HTML(progress_html(None, idle="Choose concepts and press Analyze."), label="Progress", elem_id="analyze-progress")
        with gr.Column(scale=3):
            plot = gr.Plot(label="Influence curves", show_label=False, format="png", elem_id="analyze-plot")
            text = gr.Markdown(label="Reading", show_label=False)
    table = gr.Dataframe(label="Curve values by step (gap: relative difference; causal: detection rate)", interactive=False, max_height=360)
    timer = PollTimer(POLL_SECONDS, active=False)

    outputs = [progress, plot, text, table, timer]
    run.click(friendly(partial(start, state)), [concepts, kind, measures, num_steps, seeds, anchor], [progress, timer], api_name="analyze", show_progress="hidden")
    stop.click(friendly(partial(cancel_job, state, PURPOSE)), None, progress, api_name="cancel_analysis", concurrency_limit=None, show_progress="hidden")
    timer.tick(friendly(partial(status, state)), None, outputs, api_name="analysis_status", concurrency_limit=None, show_progress="hidden")
    return {"concepts": concepts, "kind": kind, "timer": timer, "refresh": (partial(status, state), outputs)}

"""Key steps tab: choose the window [S, end) of the schedule that KSCU trains on, see it on the
influence curves, and read what the resulting Key Step Table trains."""
from __future__ import annotations

from functools import partial

import gradio as gr

from kscu.keysteps import key_step_table, scale_start, start_limit, table_summary
from kscu.plots import influence_figure
from ui.common import domain_of, friendly, kinds_for
from ui.state import WorkbenchState

DEFAULT_KIND = "style"
"""The preset shown first (every domain has one; the first kind otherwise)."""
SHOWN_ENTRIES = 60
"""Table entries listed in the summary (the rest repeat the same pattern)."""


def preset_window(state: WorkbenchState, kind: str, num_steps: float) -> tuple:
    """Start, end and iterations of the preset for this kind, on a schedule of num_steps."""
    num_steps = int(num_steps)
    preset = domain_of(state).preset(kind)
    return (gr.Slider(value=min(scale_start(preset.start_of_50, num_steps), start_limit(num_steps)), maximum=start_limit(num_steps)),
            gr.Slider(value=num_steps, maximum=num_steps), preset.iterations)


def suggested_start(state: WorkbenchState, num_steps: float) -> int:
    """S suggested by the last analysis (its first concept), moved to this schedule."""
    if not state.reports:
        raise ValueError("No analysis yet: run the Analyze tab first, or use the preset.")
    return state.reports[0].start_on(int(num_steps))


def show(state: WorkbenchState, kind: str, num_steps: float, start: float, end: float, iterations: float) -> tuple:
    """The window on the influence curves (when an analysis exists) and the table's summary."""
    num_steps, start, end, iterations = int(num_steps), int(start), int(end), int(iterations)
    if start >= end:
        raise ValueError(f"The window is empty: the start ({start}) must be below the end ({end}).")
    table = key_step_table(iterations, start, num_steps, end)
    s = table_summary(table, num_steps)
    domain = domain_of(state)
    preset = domain.preset(kind)
    listed = ", ".join(map(str, table[:SHOWN_ENTRIES])) + (" …" if len(table) > SHOWN_ENTRIES else "")
    text = (
        f"**{s['iterations']} iterations** train **{s['distinct_steps']} distinct steps** ({s['first_step']}–{s['last_step']}), "
        f"**{s['share_of_steps']:.0%} of the {num_steps}-step schedule**. The window [{start}, {end}) is walked in order; "
        f"after every 8 passes its start moves one step later (it never reaches 0.9 K = {0.9 * num_steps:g}).\n\n"
        f"For comparison: the {kind} preset starts at S = {scale_start(preset.start_of_50, num_steps)} "
        f"({preset.start_of_50} of 50) with {preset.iterations} iterations; ESD trains {domain.esd_iterations} "
        f"iterations on steps drawn from all {num_steps}.\n\n"
        f"<details><summary>First entries of the Key Step Table</summary>\n\n{listed}\n</details>"
    )
    figure = None
    if not state.reports:
        text = "Run **Analyze** to see this window on the influence curves.\n\n" + text
    else:
        k = state.reports[0].num_steps
        figure = influence_figure(state.reports, (round(start * k / num_steps), round(end * k / num_steps)))
    return figure, text


def build(state: WorkbenchState) -> dict:
    domain = domain_of(state)
    kinds = kinds_for(domain)
    first = DEFAULT_KIND if DEFAULT_KIND in kinds else kinds[0]
    default = domain.preset(first)
    gr.Markdown(
        "### Choose the key steps\n"
        "KSCU trains only on a late window of the denoising schedule, from step S to the end, where a concept's "
        "details form. Start from the preset for the kind of concept (the paper's windows), or from S suggested by "
        "the analysis, and see what the resulting table of training steps covers."
    )
    with gr.Row():
        with gr.Column(scale=2):
            kind = gr.Radio(kinds, value=first, label="Preset for the kind of concept",
                            info="nudity/object: last ~70% of the steps; style: last ~50%; instance: last ~20%.")
            num_steps = gr.Slider(10, 100, value=50, step=1, label="Denoising steps of training (K)", info="The paper uses 50.")
            start = gr.Slider(0, start_limit(50), value=scale_start(default.start_of_50, 50), step=1, label="Window start S",
                              info="0 = pure noise. Must stay below 0.9 K.")
            end = gr.Slider(1, 50, value=50, step=1, label="Window end (exclusive)", info="K = the last step (the paper); smaller for ablations.")
            iterations = gr.Number(default.iterations, precision=0, minimum=1, label="Iterations", info="Training iterations: one step of the table each.")
            with gr.Row():
                suggested = gr.Button("Use S from the analysis")
                use = gr.Button("Use this window in Unlearn", variant="primary")
        with gr.Column(scale=3):
            plot = gr.Plot(label="Window on the influence curves", show_label=False, format="png", elem_id="keysteps-plot")
            summary = gr.Markdown(label="Key Step Table summary", show_label=False)

    inputs = [kind, num_steps, start, end, iterations]
    shown = friendly(partial(show, state))
    kind.input(partial(preset_window, state), [kind, num_steps], [start, end, iterations], api_visibility="private").then(shown, inputs, [plot, summary], api_visibility="private")
    num_steps.release(partial(preset_window, state), [kind, num_steps], [start, end, iterations], api_visibility="private").then(shown, inputs, [plot, summary], api_visibility="private")
    suggested.click(friendly(partial(suggested_start, state)), num_steps, start, api_visibility="private", show_progress="hidden").success(
        shown, inputs, [plot, summary], api_visibility="private", show_progress="hidden")
    for slider in (start, end):
        slider.release(shown, inputs, [plot, summary], api_visibility="private", show_progress="hidden")
    iterations.blur(shown, inputs, [plot, summary], api_visibility="private", show_progress="hidden")
    iterations.submit(shown, inputs, [plot, summary], api_name="key_steps", show_progress="hidden")
    return {"kind": kind, "num_steps": num_steps, "start": start, "end": end, "iterations": iterations, "use": use,
            "refresh": (shown, inputs, [plot, summary])}

"""Runs tab: the run history (kscu.runs). Every finished unlearning, quick erase, comparison and
attack, from this page or the command line, is listed here (newest first, sortable by any column);
any run reopens with its settings, metrics and thumbnail, any two of one model compare side by
side, and a run is deleted only after a second, explicit confirmation."""
from __future__ import annotations

from functools import partial

import gradio as gr
import pandas as pd
from PIL import Image

from kscu import runs
from kscu.runs import RunRecord
from ui.common import friendly, image_panel
from ui.state import WorkbenchState

NO_RUN = "Choose a run first (click its row in the table, or pick its id)."


def _choices(state: WorkbenchState) -> list[tuple[str, str]]:
    return [(f"{r.id} · {r.kind}", r.id) for r in runs.list_runs(state.runs_root)]


def table(state: WorkbenchState) -> pd.DataFrame:
    return pd.DataFrame([runs.summary_row(r) for r in runs.list_runs(state.runs_root)], columns=list(runs.SUMMARY_COLUMNS))


def refresh(state: WorkbenchState) -> tuple:
    """The table and the three run pickers, from the history on disk (what other tabs, the CLI or
    an earlier session of the app recorded)."""
    choices = _choices(state)
    note = (f"{len(choices)} runs in `{state.runs_root}`." if choices else
            f"No runs in `{state.runs_root}` yet: Quick erase, Unlearn, Compare and Red team record each finished run here.")
    return (table(state), note, gr.Dropdown(choices=choices), gr.Dropdown(choices=choices), gr.Dropdown(choices=choices))


def pick_row(event: gr.SelectData) -> str:
    """A click on a row of the table picks that run (its id is the first column, however sorted)."""
    return event.row_value[0]


def _load(state: WorkbenchState, run_id: str | None) -> RunRecord:
    if not (run_id or "").strip():
        raise ValueError(NO_RUN)
    return runs.load_run(state.runs_root, run_id)


def _thumbnail(record: RunRecord) -> Image.Image | None:
    path = record.thumbnail_path
    return Image.open(path) if path is not None and path.is_file() else None


def _describe(record: RunRecord) -> str:
    lines = [f"**{record.id}**: {record.kind} of *{', '.join(record.concepts)}* ({record.method}) on `{record.model_source}` "
             f"(model hash `{record.model_hash[:12]}`), {record.created.replace('T', ' ')[:19]} UTC, {record.seconds:.1f} s."]
    if record.verdict:
        lines.append(f"Verdict: **{record.verdict}**.")
    if record.edit:
        lines.append(f"Edit: `{record.edit}`.")
    if record.losses:
        lines.append(f"Loss curve: {len(record.losses)} points, {record.losses[0]:.4g} → {record.losses[-1]:.4g}.")
    if record.thumbnail:
        lines.append(f"Grid seeds: {', '.join(map(str, record.seeds))}.")
    versions = ", ".join(f"{name} {version}" for name, version in record.versions.items())
    lines.append(f"<span class='kscu-note'>Versions: {versions}.</span>")
    return "\n\n".join(lines)


def show(state: WorkbenchState, run_id: str | None) -> tuple:
    """One run reopened: what ran, its figures with their 95 % intervals, its settings, its thumbnail."""
    record = _load(state, run_id)
    metrics = pd.DataFrame(runs.metric_lines(record), columns=list(runs.METRIC_COLUMNS))
    return _describe(record), metrics, record.config, _thumbnail(record)


def compare(state: WorkbenchState, a: str | None, b: str | None) -> tuple:
    """Two runs of one model: both thumbnails, each figure in both and its change, what differs."""
    if not (a or "").strip() or not (b or "").strip():
        raise ValueError("Choose two runs to compare: run A and run B.")
    comparison = runs.compare_runs(_load(state, a), _load(state, b))
    first, second = comparison.a, comparison.b
    notes = [f"Same model (hash `{first.model_hash[:12]}`); "
             + ("the grids are on the same seeds." if comparison.same_seeds else "the grids are not on the same seeds.")]
    notes += [f"Setting `{key}`: {va!r} → {vb!r}." for key, (va, vb) in comparison.config_changes.items()]
    notes += [f"Note: {note}." for note in comparison.notes]
    deltas = pd.DataFrame(runs.delta_lines(comparison), columns=list(runs.DELTA_COLUMNS))
    return (f"#### Run A: {first.id}", _thumbnail(first), f"#### Run B: {second.id}", _thumbnail(second), deltas, "\n\n".join(notes))


def ask_delete(state: WorkbenchState, run_id: str | None) -> tuple:
    """First click: say what would go and show the confirm button (nothing is deleted yet)."""
    record = _load(state, run_id)
    message = (f"Delete run **{record.id}** ({record.kind} of *{', '.join(record.concepts)}*)? Its record and thumbnail go "
               "for good; an edit it names stays where it is. Press **Confirm delete** to go ahead.")
    return message, gr.Button(visible=True), gr.Button(visible=True), record.id


def cancel_delete() -> tuple:
    return "Nothing deleted.", gr.Button(visible=False), gr.Button(visible=False), None


def confirm_delete(state: WorkbenchState, pending: str | None) -> tuple:
    """Second click: delete the run the first click named (never whatever is picked by then)."""
    if not pending:
        raise ValueError("Press Delete… first: it says which run would go and asks to confirm.")
    record = runs.delete_run(state.runs_root, pending)
    rows, count, _, run_a, run_b = refresh(state)
    # the deleted run's view is cleared with the picker, so nothing on the page still shows it
    return (f"Deleted run {record.id}.", gr.Button(visible=False), gr.Button(visible=False), None, rows, count,
            gr.Dropdown(choices=_choices(state), value=None), run_a, run_b, "", None, None, None)


def build(state: WorkbenchState) -> dict:
    gr.Markdown(
        "### Run history\n"
        "Every finished unlearning, quick erase, comparison and attack is recorded with its settings, model hash, library "
        "versions, metrics (with 95 % intervals) and a thumbnail of its grids, from this page or from `python -m kscu`. "
        "Click a column to sort, a row to open that run; compare any two runs of one model."
    )
    with gr.Row():
        refresh_button = gr.Button("Refresh", size="sm", scale=0, min_width=120)
        count = gr.Markdown(label="History", show_label=False, elem_classes="kscu-note")
    runs_table = gr.Dataframe(table(state), label="Recorded runs (UA / IRA of the edited model, with 95 % intervals)", interactive=False,
                              wrap=True, datatype=["str"] * (len(runs.SUMMARY_COLUMNS) - 1) + ["number"], elem_id="runs-table",
                              column_widths=["21%", "11%", "9%", "8%", "8%", "13%", "13%", "9%", "8%"])
    choices = _choices(state)
    gr.Markdown("#### Open a run")
    with gr.Row(equal_height=True):
        picked = gr.Dropdown(choices, value=None, allow_custom_value=True, label="Run (an id, or the start of one)", scale=3)
        show_button = gr.Button("Show", variant="primary", scale=1)
        delete_button = gr.Button("Delete…", variant="secondary", scale=1)
        confirm_button = gr.Button("Confirm delete", variant="stop", visible=False, scale=1)
        keep_button = gr.Button("Keep it", visible=False, scale=1)
    pending = gr.State(None)
    message = gr.Markdown(label="Delete", show_label=False, elem_id="runs-message")
    with gr.Row():
        with gr.Column(scale=3):
            summary = gr.Markdown(label="Run", show_label=False, elem_id="runs-summary")
            metrics = gr.Dataframe(label="Metrics", interactive=False, wrap=True, elem_id="runs-metrics")
            config = gr.JSON(label="Settings (config)")
        with gr.Column(scale=2):
            _, thumbnail = image_panel("Thumbnail of the run's grids", "runs-thumbnail")
    gr.Markdown("#### Compare two runs")
    with gr.Row(equal_height=True):
        run_a = gr.Dropdown(choices, value=None, allow_custom_value=True, label="Run A", scale=3)
        run_b = gr.Dropdown(choices, value=None, allow_custom_value=True, label="Run B", scale=3)
        compare_button = gr.Button("Compare", variant="primary", scale=1)
    with gr.Row():
        with gr.Column():
            title_a, thumb_a = image_panel("Run A's grids", "runs-thumb-a")
        with gr.Column():
            title_b, thumb_b = image_panel("Run B's grids", "runs-thumb-b")
    deltas = gr.Dataframe(label="Metrics of A and B and their change (B − A)", interactive=False, wrap=True, elem_id="runs-deltas")
    notes = gr.Markdown(label="Comparison notes", show_label=False, elem_id="runs-notes")

    listing = [runs_table, count, picked, run_a, run_b]
    refresh_button.click(friendly(partial(refresh, state)), None, listing, api_name="runs_list", show_progress="hidden")
    runs_table.select(pick_row, None, picked, api_visibility="private").then(
        friendly(partial(show, state)), picked, [summary, metrics, config, thumbnail], api_visibility="private")
    show_button.click(friendly(partial(show, state)), picked, [summary, metrics, config, thumbnail], api_name="run_show",
                      show_progress="hidden")
    compare_button.click(friendly(partial(compare, state)), [run_a, run_b], [title_a, thumb_a, title_b, thumb_b, deltas, notes],
                         api_name="runs_compare", show_progress="hidden")
    confirm_outputs = [message, confirm_button, keep_button, pending]
    delete_button.click(friendly(partial(ask_delete, state)), picked, confirm_outputs, api_name="run_delete", show_progress="hidden")
    keep_button.click(cancel_delete, None, confirm_outputs, api_visibility="private")
    picked.change(lambda: (gr.Button(visible=False), gr.Button(visible=False), None), None, [confirm_button, keep_button, pending],
                  api_visibility="private")  # a confirmation belongs to the run it named
    confirm_button.click(friendly(partial(confirm_delete, state)), pending,
                         [*confirm_outputs, *listing, summary, metrics, config, thumbnail], api_name="run_delete_confirm",
                         show_progress="hidden")
    return {"refresh": (partial(refresh, state), listing)}

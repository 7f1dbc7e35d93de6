"""The whole page: title, intro, model line and the tabs in the order of the user's flow, plus the
events that cross tabs (a model load reaches every tab, Key steps fills in Unlearn)."""
from __future__ import annotations

from functools import partial

import gradio as gr

from ui import analyze_tab, compare_tab, export_tab, keysteps_tab, model_tab, quick_erase, redteam_tab, runs_tab, unlearn_tab
from ui.common import concept_choices, domain_of, friendly, kinds_for
from ui.state import WorkbenchState

TITLE = "KSCU Workbench"
INTRO = (
    "Make a text-to-image model forget a concept (a style, an object, a colour, nudity) while it keeps drawing "
    "everything else. KSCU ([Key Step Concept Unlearning](https://arxiv.org/abs/2507.06526)) fine-tunes the model only "
    "at the denoising steps where that kind of concept takes shape, instead of at all of them. **Quick erase** does it "
    "in one click with tested presets; the other tabs, left to right, show every step: load a model, see at which "
    "steps a concept forms, pick the key steps, unlearn while watching it train, compare before and after, attack the "
    "edit to see whether the concept comes back, and export it. Heavy work runs one job at a time in the background, shared by everyone using this page."
)
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="slate")
CSS = """
.kscu-progress { padding: 8px 12px; border-radius: 8px; border: 1px solid var(--border-color-primary); background: var(--block-background-fill); }
.kscu-progress.idle { color: var(--body-text-color-subdued); }
.kscu-bar { height: 10px; border-radius: 5px; overflow: hidden; margin: 6px 0; background: var(--neutral-200); }
.kscu-bar > div { height: 100%; background: var(--color-accent); transition: width 0.5s; }
.kscu-progress.failed .kscu-bar > div, .kscu-progress.cancelled .kscu-bar > div { background: var(--error-text-color, #c33); }
.kscu-progress-msg { font-size: 0.9em; color: var(--body-text-color-subdued); }
.kscu-note { font-size: 0.9em; opacity: 0.8; }
img { image-rendering: pixelated; }
"""
"""Progress bar styles; pixelated rendering keeps the small demo images sharp when the browser scales them."""


def domain_updates(state: WorkbenchState) -> tuple:
    """Concept examples and kinds of the loaded model's domain, for every tab that offers them
    (the "also erase" multi-selects last)."""
    domain = domain_of(state)
    kinds = kinds_for(domain)
    concepts = concept_choices(domain)
    first = "style" if "style" in kinds else kinds[0]
    return (gr.Dropdown(choices=concepts, value=None), gr.Dropdown(choices=kinds, value=None),
            gr.Dropdown(choices=concepts, value=[]), gr.Dropdown(choices=["auto"] + kinds, value="auto"),
            gr.Radio(choices=kinds, value=first), gr.Dropdown(choices=concepts, value=None), gr.Dropdown(choices=kinds, value=first),
            gr.Dropdown(choices=concepts, value=[]), gr.Dropdown(choices=concepts, value=[]))


def use_window(kind: str, num_steps: float, start: float, end: float, iterations: float) -> tuple:
    """Copy the Key steps window into the Unlearn settings (KSCU) and switch to that tab."""
    return (kind, "kscu", iterations, num_steps, gr.Slider(value=start, maximum=int(num_steps) - 1, interactive=True),
            gr.Slider(value=end, maximum=int(num_steps), interactive=True), gr.Tabs(selected="unlearn"))


CACHE_CLEANUP = (60, 180)
"""gradio's delete_cache (every, older than; seconds): every image and plot a job shows is a file
in gradio's cache, about 40 per job, and without this they pile up until the server stops
(benchmarks/soak.py). The price: a download button on a result older than three minutes finds
its file gone; a reloaded page asks for the current results again, and Export writes its own files.
"""


def build_app(state: WorkbenchState) -> gr.Blocks:
    """The Blocks app over one shared state (theme and CSS go to launch(), as Gradio 6 wants)."""
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=CACHE_CLEANUP) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        header = gr.Markdown(model_tab.header(state), label="Model status", show_label=False)
        with gr.Tabs() as tabs:
            with gr.Tab("Quick erase", id="quick"):
                quick = quick_erase.build(state)
            with gr.Tab("Model", id="model"):
                model = model_tab.build(state)
            with gr.Tab("Analyze", id="analyze"):
                analyze = analyze_tab.build(state)
            with gr.Tab("Key steps", id="keysteps"):
                keys = keysteps_tab.build(state)
            with gr.Tab("Unlearn", id="unlearn"):
                unlearn = unlearn_tab.build(state)
            with gr.Tab("Compare", id="compare") as compare_page:
                compare = compare_tab.build(state)
            with gr.Tab("Red team", id="redteam") as redteam_page:
                redteam = redteam_tab.build(state)
            with gr.Tab("Export", id="export") as export_page:
                export = export_tab.build(state)
            with gr.Tab("Runs", id="runs") as runs_page:
                history = runs_tab.build(state)

        domain_outputs = [quick["concept"], quick["kind"], analyze["concepts"], analyze["kind"], keys["kind"], unlearn["concept"], unlearn["kind"],
                          quick["also"], unlearn["also"]]
        # Progress (and a failure's badge) show in a status area under the button, not on the summary
        # of the model that stays loaded; the message itself comes as a message box.
        model["load"].click(
            friendly(partial(model_tab.load, state)), [model["source_type"], model["location"], model["device"], model["family"], model["judge"]],
            [model["summary"], header], api_name="load_model", concurrency_id="heavy", show_progress_on=[model["status"]],
        ).success(partial(domain_updates, state), None, domain_outputs, api_visibility="private")
        keys["use"].click(
            use_window, [keys["kind"], keys["num_steps"], keys["start"], keys["end"], keys["iterations"]],
            [unlearn["kind"], unlearn["method"], unlearn["iterations"], unlearn["num_steps"], unlearn["start"], unlearn["end"], tabs],
            api_visibility="private",
        )
        quick["break"].click(friendly(partial(redteam_tab.try_to_break, state)), None, [tabs, redteam["methods"], *redteam["outputs"]],
                             api_name="try_to_break", show_progress="hidden")
        for page, tab in ((compare_page, compare), (redteam_page, redteam), (export_page, export)):
            fn, output = tab["refresh_choices"]
            page.select(fn, None, output, api_visibility="private")
        fn, outputs = history["refresh"]
        runs_page.select(fn, None, outputs, api_visibility="private")  # runs recorded since the page loaded

        # A reloaded page (or a second browser tab) shows the running jobs and the last results.
        for tab in (quick, analyze, unlearn, redteam, history):
            fn, outputs = tab["refresh"]
            demo.load(fn, None, outputs, api_visibility="private")
        fn, inputs, outputs = compare["refresh"]
        demo.load(fn, inputs, outputs, api_visibility="private")
        fn, inputs, outputs = keys["refresh"]
        demo.load(fn, inputs, outputs, api_visibility="private")
        demo.load(lambda: model_tab.header(state), None, header, api_visibility="private")
    return demo

"""Model tab: load the embedded demo model, a local folder or file, or a hub id (optionally with a
judge and a family), and describe it."""
from __future__ import annotations

import gradio as gr

from kscu.models import describe, load_model
from ui.state import WorkbenchState

SOURCES = ("Embedded demo model", "Local folder or file", "Hugging Face hub id")
DEVICES = ("auto", "cpu", "cuda")
FAMILIES = ("auto", "demo", "sd1")
"""auto: what kscu.models.load_model decides (demo for a demo model folder, else sd1)."""


def model_summary(state: WorkbenchState) -> str:
    """Markdown describing the loaded model (or why none is loaded)."""
    if state.model is None:
        why = state.model_error or "no model was given at start."
        return f"**No model loaded.** {why}"
    info = describe(state.model)
    p = info["parameters"]
    judge = (f"{info['judge']}: UA / IRA / CRA are measured" if info["judge"] else
             "none: UA / IRA / CRA are not measured; the image grids and the image change (SSIM) show what an edit did")
    rows = [
        ("Source", f"`{info['source']}`"),
        ("Family", f"{state.model.domain.description} (`{info['family']}`)"),
        ("Judge", judge),
        ("Device", f"{info['device']} ({info['dtype']})"),
        ("Parameters", f"{p['total'] / 1e6:.1f} M: UNet {p['unet'] / 1e6:.1f} M, text encoder {p['text_encoder'] / 1e6:.1f} M, VAE {p['vae'] / 1e6:.1f} M"),
        ("Image size", f"{info['resolution']} px, {info['scheduler']}"),
        ("Model hash", f"`{info['model_hash']}` (recorded in every edit)"),
    ]
    return "\n".join(f"- **{k}:** {v}" for k, v in rows)


def header(state: WorkbenchState) -> str:
    """The one-line model status under the title."""
    if state.model is None:
        return "**Model:** none loaded: open the **Model** tab."
    m = state.model
    judge = m.domain.judge.name if m.domain.judge is not None else "no judge"
    return f"**Model:** `{m.source}` · {m.family} · {judge} · {m.device} · hash `{m.model_hash}`"


def load(state: WorkbenchState, source_type: str, location: str, device: str, family: str = "auto", judge: str = "") -> tuple[str, str]:
    """Load a model (waits for no other job to run) and return (summary, header). family: auto /
    demo / sd1 (auto: load_model decides); judge: a CLIP folder or hub id, or nudenet (empty: the
    model's own)."""
    location = (location or "").strip()
    judge = (judge or "").strip() or None
    family = None if family in (None, "", "auto") else family
    if source_type == SOURCES[0]:
        source = None
    elif not location:
        raise ValueError(f"Type the {'folder or .safetensors file' if source_type == SOURCES[1] else 'hub id (owner/name)'} to load.")
    elif source_type == SOURCES[2] and not state.online:
        raise ValueError("The workbench runs offline, so hub ids cannot be downloaded: restart it with `python app.py --online`, or give a local folder.")
    else:
        source = location
    model = state.run_now("load model", lambda: load_model(source, device=None if device == "auto" else device, family=family, judge=judge))
    state.set_model(model)
    return model_summary(state), header(state)


def build(state: WorkbenchState) -> dict:
    """The tab's components; layout.py wires Load, whose results reach every tab."""
    gr.Markdown(
        "Load the model to work on. The **embedded demo model** draws simple shapes and knows its own concepts exactly, "
        "so every edit can be scored. Real **Stable Diffusion 1.x** models (a diffusers folder or a single `.safetensors` "
        "checkpoint) work too: give them a **judge** (a CLIP model, or NudeNet for nudity) to score edits, or judge by the "
        "image grids and the image change, which every model gets. A GPU is used automatically when there is one."
    )
    with gr.Row():
        with gr.Column(scale=2):
            source_type = gr.Radio(list(SOURCES), value=SOURCES[0], label="Model source",
                                   info="The demo model needs no download; hub ids need the app started with --online.")
            location = gr.Textbox(label="Folder, file or hub id", placeholder="/path/to/model-folder, model.safetensors, or owner/name",
                                  info="Ignored for the embedded demo model. Pickle checkpoints (.ckpt, .bin) are refused: they can run code.")
            with gr.Row():
                device = gr.Radio(list(DEVICES), value="auto", label="Device", info="auto: the GPU when there is one, else the CPU.")
                family = gr.Radio(list(FAMILIES), value="auto", label="Model family",
                                  info="auto: demo for a demo model folder, else sd1 (any SD1.x model, no demo knowledge).")
            judge = gr.Textbox("", label="Judge (optional)", placeholder="empty: the model's own (the demo classifier; none on SD1.x)",
                               info="What reads the images for UA / IRA / CRA: a CLIP folder or hub id (e.g. openai/clip-vit-large-patch14), "
                                    "or nudenet. Hub ids need the app started with --online unless they are in the local cache.")
            load_button = gr.Button("Load model", variant="primary")
            gr.Markdown("Loading takes seconds for the demo model, a minute or two for SD1.x, and drops the analyses and "
                        "edits of the previous model.", elem_classes="kscu-note")
            status = gr.Markdown(min_height=48)  # shows the loading spinner, or a badge if loading failed
        with gr.Column(scale=3):
            gr.Markdown("### Loaded model")
            summary = gr.Markdown(model_summary(state), label="Loaded model", show_label=False, elem_id="model-summary")
    return {"source_type": source_type, "location": location, "device": device, "family": family, "judge": judge,
            "load": load_button, "status": status, "summary": summary}

"""Export tab: download the edit (.safetensors with its metadata), optionally the whole edited
model as a zipped diffusers folder, and load an earlier edit back as the current one."""
from __future__ import annotations

import os
import shutil
import uuid
import zipfile
from functools import partial
from pathlib import Path

import gradio as gr

from kscu.export import check_compatible, edit_stem, export_pipeline, load_edit, save_edit
from kscu.trainer import UnlearnResult
from ui.common import edit_choices, friendly
from ui.state import METHOD_NAMES, WorkbenchState, edit_key


def metadata(result: UnlearnResult) -> dict:
    """What the edit file records, in the order a reader wants it."""
    return {"concept": result.config.concept, "kind": result.config.kind, "method": result.config.method,
            "base_model": result.base_source, "base_hash": result.base_hash, "family": result.family,
            "seconds": round(result.seconds, 1), "tensors": len(result.params),
            "unet_forwards": result.unet_forwards, "unet_backwards": result.unet_backwards,
            "sanity": result.sanity.to_dict() if result.sanity is not None else None, "config": result.config.to_dict()}


KEEP_DOWNLOADS = 4
"""Download folders kept; older ones are removed when a new one is made (an SD1.x export is 2-4 GB)."""


def _fresh_dir(state: WorkbenchState) -> Path:
    """One folder per download, so a second export never overwrites a file being downloaded; the
    oldest beyond KEEP_DOWNLOADS go (a download already under way keeps reading its open file)."""
    folders = sorted((p for p in state.files_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in folders[: max(0, len(folders) - KEEP_DOWNLOADS + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    folder = state.files_dir / uuid.uuid4().hex[:8]
    folder.mkdir(parents=True)
    return folder


def available(state: WorkbenchState) -> gr.Radio:
    """The kept edits to choose from, the current one selected."""
    return gr.Radio(choices=edit_choices(state), value=state.current)


def save(state: WorkbenchState, method: str | None) -> tuple[str, dict]:
    """Write the edit as one .safetensors file; returns (path to download, its metadata)."""
    result = state.result(method)
    path = save_edit(result, _fresh_dir(state) / f"{edit_stem(result)}.safetensors")
    return str(path), metadata(result)


def save_pipeline(state: WorkbenchState, method: str | None) -> gr.File:
    """The base model with the edit applied, as a zipped diffusers folder (waits for no job to run)."""
    model, result = state.require_model(), state.result(method)

    def work() -> str:
        folder = _fresh_dir(state)
        exported = export_pipeline(model, result, folder / f"{edit_stem(result)}-pipeline")
        archive = folder / f"{exported.name}.zip"
        tmp = archive.with_suffix(".zip.tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:  # weights do not compress: store them
            for file in sorted(exported.rglob("*")):
                if file.is_file():
                    zf.write(file, Path(exported.name) / file.relative_to(exported))
        os.replace(tmp, archive)
        return str(archive)

    return gr.File(value=state.run_now("export the edited model", work), visible=True)


def load(state: WorkbenchState, upload: str | None) -> tuple[dict, str]:
    """Load an edit file as the current edit of its method; warns if made on other weights."""
    model = state.require_model()
    if not upload:
        raise ValueError("Choose an edit file (.safetensors) first.")
    result = load_edit(upload)
    warning = check_compatible(result, model)
    if warning:
        gr.Warning(warning)
    state.keep_result(result)
    name = METHOD_NAMES[edit_key(result.config)]
    return metadata(result), f"Loaded a {name} edit of *{result.config.concept}*: it is now the current edit for Compare and Export."


def build(state: WorkbenchState) -> dict:
    gr.Markdown(
        "### Take the edit with you\n"
        "An edit is small: only the weights unlearning changed, in one `.safetensors` file whose metadata records what "
        "was erased, how, and on which base model (by hash). Apply it to the same base model with "
        "`python -m kscu generate --edit FILE`, or load it back here. The full model export is a standard diffusers "
        "folder that any Stable Diffusion tool can open."
    )
    with gr.Row():
        with gr.Column():
            gr.Markdown("#### Download")
            method = gr.Radio(edit_choices(state), label="Edit to export", info="The most recent edit is selected.")
            with gr.Row():
                save_button = gr.Button("Save edit file", variant="primary")
                pipeline_button = gr.Button("Export the full edited model (zip)")
            edit_file = gr.File(label="Edit (.safetensors)", interactive=False, elem_id="export-edit-file")
            gr.Markdown("The full export writes the whole model: about 45 MB for the demo model, 2–4 GB for SD1.x.",
                        elem_classes="kscu-note")
            status = gr.Markdown(min_height=48)  # shows the export's spinner, or a badge if it failed
            pipeline_file = gr.File(label="Edited model (diffusers folder, zip)", interactive=False, visible=False)
        with gr.Column():
            gr.Markdown("#### Load an earlier edit")
            upload = gr.File(label="Edit file", file_types=[".safetensors"], type="filepath")
            load_button = gr.Button("Load this edit")
            message = gr.Markdown(label="Message", show_label=False)
            details = gr.JSON(label="Edit metadata")

    save_button.click(friendly(partial(save, state)), method, [edit_file, details], api_name="export_edit", show_progress="hidden")
    pipeline_button.click(friendly(partial(save_pipeline, state)), method, pipeline_file, api_name="export_pipeline",
                          show_progress_on=[status], concurrency_id="heavy")
    load_button.click(friendly(partial(load, state)), upload, [details, message], api_name="load_edit", show_progress="hidden")
    return {"method": method, "refresh_choices": (partial(available, state), method)}

"""Export tab: download the edit (.safetensors with its metadata), a LoRA of it, the whole edited
model as one SD1.x checkpoint file or a zipped diffusers folder; load an earlier edit, or one made
elsewhere (a LoRA, a file of UNet tensors), as the current one."""
from __future__ import annotations

import os
import shutil
import uuid
import zipfile
from functools import partial
from pathlib import Path

import gradio as gr

from kscu.export import check_compatible, edit_stem, export_pipeline, export_single_file, save_edit
from kscu.export_formats import DEFAULT_RANK, LAYOUTS
from kscu.importing import open_edit
from kscu.lora import low_rank, save_lora
from kscu.trainer import UnlearnResult
from ui.common import edit_choices, friendly
from ui.state import METHOD_NAMES, WorkbenchState, edit_key


def metadata(result: UnlearnResult) -> dict:
    """What the edit file records, in the order a reader wants it."""
    return {"concept": result.config.concept, "kind": result.config.kind, "method": result.config.method,
            "concepts": [f"{c.concept} ({c.kind})" for c in result.configs],
            "base_model": result.base_source, "base_hash": result.base_hash, "family": result.family,
            "seconds": round(result.seconds, 1), "tensors": len(result.params),
            "unet_forwards": result.unet_forwards, "unet_backwards": result.unet_backwards,
            "sanity": result.sanity.to_dict() if result.sanity is not None else None, "config": result.config.known_settings()}


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


def save_lora_file(state: WorkbenchState, method: str | None, rank: int | None, layout: str) -> tuple[str, str]:
    """The edit's rank-r LoRA as one .safetensors file; returns (path to download, what it holds)."""
    model, result = state.require_model(), state.result(method)
    if rank is None:
        raise ValueError(f"LoRA rank: give a whole number, e.g. {DEFAULT_RANK}.")
    lora = low_rank(result, model, int(rank))
    path = save_lora(lora, _fresh_dir(state) / f"{edit_stem(result)}-lora-r{lora.rank}-{layout}.safetensors", layout)
    dropped = lora.dropped_message() if lora.dropped else ""
    note = f" {dropped[0].upper()}{dropped[1:]}." if dropped else ""
    return str(path), f"Rank-{lora.rank} LoRA ({layout} layout, float16): {path.stat().st_size / 1024:.0f} KiB.{note}"


def save_checkpoint(state: WorkbenchState, method: str | None) -> gr.File:
    """The edited model as one original-layout SD1.x .safetensors (waits for no job to run)."""
    model, result = state.require_model(), state.result(method)

    def work() -> str:
        return str(export_single_file(model, result, _fresh_dir(state) / f"{edit_stem(result)}-model.safetensors"))

    return gr.File(value=state.run_now("export the edited model", work), visible=True)


def load(state: WorkbenchState, upload: str | None, concept: str = "") -> tuple[dict, str]:
    """Load an edit file (ours, a LoRA, or UNet tensors made elsewhere) as the current edit of its
    method; warns if made on other weights."""
    model = state.require_model()
    if not upload:
        raise ValueError("Choose an edit file (.safetensors) first.")
    result = open_edit(upload, model, concept or None)
    warning = check_compatible(result, model)
    if warning:
        gr.Warning(warning)
    state.keep_result(result)
    name = METHOD_NAMES[edit_key(result.config)]
    article = "an" if name[0] in "aeiou" else "a"
    return metadata(result), (f"Loaded {article} {name} edit of *{', '.join(result.config.concepts)}*: it is now the current edit for Compare, "
                              "Red team and Export.")


def build(state: WorkbenchState) -> dict:
    gr.Markdown(
        "### Take the edit with you\n"
        "An edit is small: only the weights unlearning changed, in one `.safetensors` file whose metadata records what "
        "was erased, how, and on which base model (by hash). Apply it to the same base model with "
        "`python -m kscu generate --edit FILE`, or load it back here. For other tools: a LoRA of the edit, or the whole "
        "edited model as one checkpoint file or a diffusers folder."
    )
    with gr.Row():
        with gr.Column():
            gr.Markdown("#### Download")
            method = gr.Radio(edit_choices(state), label="Edit to export", info="The most recent edit is selected.")
            with gr.Row():
                save_button = gr.Button("Save edit file", variant="primary")
            edit_file = gr.File(label="Edit (.safetensors)", interactive=False, elem_id="export-edit-file")
            gr.Markdown("#### As a LoRA (A1111, ComfyUI, diffusers)")
            with gr.Row():
                rank = gr.Number(DEFAULT_RANK, label="LoRA rank", minimum=1, precision=0,
                                 info=f"Each changed layer as a rank-r product; {DEFAULT_RANK} keeps the demo edits' UA and IRA within 2 points.")
                layout = gr.Radio(list(LAYOUTS), value="kohya", label="Layout",
                                  info="kohya: A1111 and ComfyUI; diffusers: pipe.load_lora_weights")
            lora_button = gr.Button("Save as LoRA")
            lora_file = gr.File(label="LoRA (.safetensors)", interactive=False)
            lora_note = gr.Markdown(label="What the LoRA holds", show_label=False, elem_classes="kscu-note")
            gr.Markdown("#### The whole edited model")
            with gr.Row():
                checkpoint_button = gr.Button("One checkpoint file (.safetensors)")
                pipeline_button = gr.Button("Diffusers folder (zip)")
            gr.Markdown("The checkpoint file is the original SD1.x layout that A1111 and ComfyUI load; the folder is what "
                        "diffusers' from_pretrained loads. Either is the whole model: about 45 MB for the demo model, 2–4 GB for SD1.x.",
                        elem_classes="kscu-note")
            status = gr.Markdown(min_height=48)  # shows the export's spinner, or a badge if it failed
            checkpoint_file = gr.File(label="Edited model (one .safetensors)", interactive=False, visible=False)
            pipeline_file = gr.File(label="Edited model (diffusers folder, zip)", interactive=False, visible=False)
        with gr.Column():
            gr.Markdown("#### Load an earlier edit, or one made elsewhere")
            upload = gr.File(label="Edit file", file_types=[".safetensors"], type="filepath")
            concept = gr.Textbox(label="Concept it erased", placeholder="e.g. striped (a comma list if several)",
                                 info="Needed for a LoRA or a file of UNet tensors made outside the workbench; ours say it themselves.")
            load_button = gr.Button("Load this edit")
            message = gr.Markdown(label="Message", show_label=False)
            details = gr.JSON(label="Edit metadata")

    save_button.click(friendly(partial(save, state)), method, [edit_file, details], api_name="export_edit", show_progress="hidden")
    pipeline_button.click(friendly(partial(save_pipeline, state)), method, pipeline_file, api_name="export_pipeline",
                          show_progress_on=[status], concurrency_id="heavy")
    lora_button.click(friendly(partial(save_lora_file, state)), [method, rank, layout], [lora_file, lora_note], api_name="export_lora",
                      show_progress="hidden")
    checkpoint_button.click(friendly(partial(save_checkpoint, state)), method, checkpoint_file, api_name="export_checkpoint",
                            show_progress_on=[status], concurrency_id="heavy")
    load_button.click(friendly(partial(load, state)), [upload, concept], [details, message], api_name="load_edit",
                      show_progress="hidden").success(partial(available, state), None, method, api_visibility="private")
    return {"method": method, "refresh_choices": (partial(available, state), method)}

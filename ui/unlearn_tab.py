"""Unlearn tab: run KSCU (or the ESD baseline) in the background with every setting visible,
watch its loss and preview images, cancel it; the last KSCU and ESD edits are kept side by side."""
from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Callable

import gradio as gr

from kscu.config import DEFAULT_SCHEDULE, IMPORTED, UnlearnConfig, from_inputs
from kscu.domain import Domain
from kscu.grids import blur, grid_prompts
from kscu.jobs import start_unlearning
from kscu.plots import loss_figure
from kscu.trainer import UnlearnResult
from ui.common import (POLL_SECONDS, PollTimer, cancel_job, check_request, clean_concept, concept_choices, domain_of, duration, friendly, kind_of,
                       kinds_for, progress_html, resolve_kind, timer_state, upscale)
from ui.results import BLUR_SHARE, needs_blur, sanity_cell
from ui.spaces_gpu import TRAIN_SECONDS, gpu
from ui.state import METHOD_NAMES, TrainingView, WorkbenchState

PURPOSE = "unlearn"
METHODS = [("KSCU: key steps only", "kscu"), ("ESD: all steps (baseline)", "esd")]
SCHEDULE_LABELS = [("interleaved", "interleaved"), ("each concept's window in turn", "in_turn")]
PARAM_LABELS = [("cross-attention (xattn)", "xattn"), ("all but cross-attention (noxattn)", "noxattn"), ("everything (full)", "full")]
PREVIEW_HEADING = "#### Previews with the model being tuned: the concept (and the next one erased), then a neighbour that must stay"
DEFAULT_KIND = "style"
"""The kind shown first (every domain has it; the first kind otherwise)."""
PREVIEW_SEEDS = (0, 1)
"""Each preview prompt is drawn with these seeds, the same at every preview."""


def preset_fields(state: WorkbenchState, concept: str | None, kind: str | None, method: str, num_steps: float) -> tuple:
    """Iterations, learning rate, parameters, window, anchor, concepts to keep, trajectories per
    iteration and the trajectory pool from the preset (what None resolves to; the demo style preset maps a style to 'plain'
    and keeps its look-alikes)."""
    domain = domain_of(state)
    num_steps = int(num_steps)
    kind = kind or (DEFAULT_KIND if DEFAULT_KIND in domain.kinds else domain.kinds[0])
    cfg = UnlearnConfig(concept=(concept or "").strip() or "-", kind=kind, method=method, num_steps=num_steps).resolve(domain)
    kscu = method == "kscu"
    return (cfg.iterations, cfg.lr, cfg.params,
            gr.Slider(value=cfg.start_step, maximum=num_steps - 1, interactive=kscu),
            gr.Slider(value=cfg.end_step, maximum=num_steps, interactive=kscu),
            cfg.anchor, ", ".join(cfg.preserve), cfg.trajectories, gr.Number(value=cfg.pool, interactive=kscu))


def on_concept(state: WorkbenchState, concept: str | None, method: str, num_steps: float) -> tuple:
    """A concept whose kind the model knows sets that kind and its preset; other text changes nothing."""
    kind = kind_of(concept or "", domain_of(state))
    if kind is None:
        return (gr.skip(),) * 10
    return (kind, *preset_fields(state, concept, kind, method, num_steps))


def neighbours(domain: Domain, concept: str, kind: str) -> list[str]:
    """Concepts that must survive erasing `concept` (the domain's default neighbours; none when it has none)."""
    try:
        return domain.default_neighbours(concept, kind)
    except ValueError:
        return []


def start(state: WorkbenchState, names: list[str], *values) -> tuple[str, PollTimer]:
    """Start unlearning in the background (kscu.jobs.start_unlearning) with live previews.

    `values` are the fields' in the order of `names` (UnlearnConfig field names, and "previews"): the
    config is made by kscu.config.from_inputs, as the CLI's is. An emptied number field means "the
    preset's"; anything typed, 0 included, is checked as typed; the anchor and keep fields show the
    preset's values, so emptied they mean "none". Robust ticked: the window start is measured, so the
    slider's S is not sent."""
    model = state.require_model()
    inputs = dict(zip(names, values))
    previews = inputs.pop("previews")
    inputs["concept"] = clean_concept(inputs["concept"])
    inputs["anchor"] = inputs["anchor"] or ""
    inputs["preserve"] = inputs["preserve"] or ""
    if inputs.get("robust"):
        inputs["start_step"] = None
    request = from_inputs(inputs)
    checked = check_request(replace(request, kind=resolve_kind(request.concept, request.kind, model.domain)), model)
    config = checked.config
    concept = config.concept
    words = [concept, *config.also[:1]] + neighbours(model.domain, concept, config.kind)[:1]
    rows = grid_prompts(model, concept, words[1:], config.kind)
    prompts = [p for p in rows for _ in PREVIEW_SEEDS]
    seeds = list(PREVIEW_SEEDS) * len(rows)
    every = max(1, sum(part.iterations for part in checked.parts) // max(1, int(previews)))
    job = state.track(PURPOSE, start_unlearning(state.runner, model, checked, prompts, seeds, every,
                                                    wrap=gpu(TRAIN_SECONDS)))
    captions = [f"{w}, seed {s}" for w in words for s in PREVIEW_SEEDS]
    state.job_info[job.id] = TrainingView(config, captions)
    return progress_html(job.snapshot()), PollTimer(active=True)


def _final_loss(losses: list[float]) -> str:
    tail = losses[-max(1, len(losses) // 10):]
    return f"{sum(tail) / len(tail):.4g}" if tail else "–"


def edits_summary(state: WorkbenchState) -> str:
    """The last KSCU and ESD edits side by side (how they were trained: an imported edit is not listed)."""
    state.adopt_finished()
    methods = [m for m in METHOD_NAMES if m in state.results and state.results[m].config.method != IMPORTED]
    if not methods:
        return "No edit yet."
    def each(cell) -> Callable[[UnlearnResult], str]:  # one value per erased concept, "; " between them
        return lambda r: "; ".join(cell(c) for c in r.configs)

    rows = {"concept (kind)": each(lambda c: f"{c.concept} ({c.kind})"),
            "iterations": each(lambda c: str(c.iterations)),
            "steps trained": each(lambda c: f"{c.start_step}–{c.end_step - 1} of {c.num_steps}" if c.method == "kscu" else f"all {c.num_steps}"),
            "learning rate, parameters": each(lambda c: f"{c.lr:g}, {c.params}"),
            "kept (preservation term)": each(lambda c: ", ".join(c.preserve) or "none"),
            "time": lambda r: duration(r.seconds),
            "UNet forward / backward passes": lambda r: f"{r.unet_forwards:,} / {r.unet_backwards:,}",
            "final loss (mean of last 10%)": lambda r: _final_loss(r.losses),
            "sanity check (other prompts)": lambda r: sanity_cell(r.sanity)}
    head = "| | " + " | ".join(f"last {METHOD_NAMES[m]} edit" + (" (current)" if m == state.current else "") for m in methods) + " |"
    lines = [head, "|---" * (len(methods) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(value(state.results[m]) for m in methods) + " |" for name, value in rows.items()]
    return "\n".join(lines)


def status(state: WorkbenchState) -> tuple:
    """Poll: progress, live loss curve and previews; the edits summary once finished."""
    snap = state.snapshot(PURPOSE)
    progress = progress_html(snap, idle="Set up the run and press Start.")
    if snap is None:
        return progress, gr.skip(), gr.skip(), gr.skip(), edits_summary(state), gr.skip(), timer_state(snap)
    info = state.job_info.get(snap.id)
    config = info.config if isinstance(info, TrainingView) else None
    losses = snap.losses
    figure = loss_figure([loss for _, _, loss in losses], [k for _, k, _ in losses])
    gallery, heading = None, PREVIEW_HEADING  # a new run starts with no previews, not the last run's
    if snap.preview is not None:
        images = snap.preview
        if config is not None and needs_blur(domain_of(state), config.kind):
            images = blur(images, max(2.0, images.shape[2] * BLUR_SHARE))
        captions = info.captions if isinstance(info, TrainingView) else []
        gallery = list(zip(upscale(images), captions)) if len(captions) == len(images) else upscale(images)
        heading = f"{PREVIEW_HEADING}, at iteration {snap.preview_iteration}"
    record = {"state": snap.state, "progress": round(snap.progress, 4), "iterations_done": len(losses),
              "elapsed_s": round(snap.elapsed, 1), "message": snap.error or snap.message,
              "config": config.to_dict() if config is not None else None}
    return progress, figure, heading, gallery, edits_summary(state), record, timer_state(snap)


def build(state: WorkbenchState) -> dict:
    domain = domain_of(state)
    kinds = kinds_for(domain)
    first = DEFAULT_KIND if DEFAULT_KIND in kinds else kinds[0]
    initial = UnlearnConfig(concept="-", kind=first).resolve(domain)
    gr.Markdown(
        "### Erase a concept, step by step\n"
        "Fine-tune a copy of the model so that it no longer draws the concept. **KSCU** trains only at the key steps; "
        "**ESD**, the baseline it improves on, trains at all steps. Run both to compare them. Training runs in the "
        "background: the other tabs stay usable, and Cancel stops it at the next iteration."
    )
    with gr.Row():
        with gr.Column(scale=2):
            concept = gr.Dropdown(concept_choices(domain), value=None, allow_custom_value=True, label="Concept to erase",
                                  info="Pick one or type your own.")
            kind = gr.Dropdown(kinds, value=first, label="Kind of concept", info="Selects the preset below.")
            also = gr.Dropdown(concept_choices(domain), value=[], multiselect=True, allow_custom_value=True, label="Also erase (optional)",
                               info="More concepts in the same job, each with its own kind's preset; the settings below are the first concept's (iterations: each concept's).")
            schedule = gr.Radio(SCHEDULE_LABELS, value=DEFAULT_SCHEDULE, label="Order of the concepts' iterations",
                                info="Several concepts: alternating (kept more in our measurements), or each window in turn "
                                     "(as the KSCU authors do).")
            method = gr.Radio(METHODS, value="kscu", label="Method", info="ESD ignores the window and samples every step.")
            with gr.Accordion("Advanced settings (the preset's values are filled in)", open=False):
                with gr.Row():
                    iterations = gr.Number(initial.iterations, precision=0, label="Iterations", info="One Adam step each.")
                    lr = gr.Number(initial.lr, label="Learning rate", info="The demo model: 1.5e-4 (style, colour) to 3e-4; SD1.x uses 1e-5.")
                params = gr.Radio(PARAM_LABELS, value=initial.params, label="Parameters trained",
                                  info="Styles: cross-attention; objects and nudity on SD1.x: the rest (the paper's choice).")
                anchor = gr.Textbox(initial.anchor, label="Anchor concept (optional)", placeholder="e.g. plain",
                                    info="Map the concept to this one instead; the preset's choice is filled in. Empty: the sentence without the concept.")
                keep = gr.Textbox(", ".join(initial.preserve), label="Concepts to keep (optional)", placeholder="e.g. dotted, checkered",
                                  info="Comma list. Holds their outputs where they were (an extra loss term, not in the paper; 1.4x-1.9x the time); "
                                       "the preset's look-alikes are filled in. Empty: none.")
                with gr.Row():
                    trajectories = gr.Number(initial.trajectories, precision=0, label="Trajectories per iteration",
                                             info="Each with its own phrasing and noise: steadier updates, more time per iteration (not in the paper).")
                    pool = gr.Number(initial.pool, precision=0, label="Trajectory pool (KSCU)",
                                     info="Trajectories the unedited model draws first; each iteration trains on random ones. 0: walk one, as the paper does.")
                with gr.Row():
                    seed = gr.Number(0, precision=0, label="Seed", info="Same seed and settings, same edit.")
                    previews = gr.Slider(1, 20, value=5, step=1, label="Previews", info="How many times to draw preview images during training.")
                robust = gr.Checkbox(False, label="Robust window (KSCU, about twice the time)",
                                     info="Measure where the concept is decided and start the window there instead of at S "
                                          "(not in the paper; the preset's iterations grow with the wider window): harder to break "
                                          "with learned prompt tokens (check it in the Red team).")
                num_steps = gr.Slider(10, 100, value=initial.num_steps, step=1, label="Denoising steps (K)", info="Schedule the key steps refer to.")
                with gr.Row():
                    start_step = gr.Slider(0, initial.num_steps - 1, value=initial.start_step, step=1, label="Window start S", info="KSCU trains steps S..end-1.")
                    end_step = gr.Slider(1, initial.num_steps, value=initial.end_step, step=1, label="Window end (exclusive)", info="Usually K.")
            with gr.Row():
                run = gr.Button("Start", variant="primary")
                stop = gr.Button("Cancel", variant="stop")
            progress = gr.HTML(progress_html(None, idle="Set up the run and press Start."), label="Progress", elem_id="unlearn-progress")
        with gr.Column(scale=3):
            gr.Markdown("#### Loss, and the key step each iteration trained")
            loss = gr.Plot(label="Loss curve", show_label=False, format="png", elem_id="unlearn-loss")
            preview_heading = gr.Markdown(PREVIEW_HEADING, label="Previews: title", show_label=False)
            gallery = gr.Gallery(label="Previews", show_label=False, columns=4, height="auto", elem_id="unlearn-previews",
                                 object_fit="contain", allow_preview=True)
    gr.Markdown("### Kept edits")
    summary = gr.Markdown(edits_summary(state), label="Kept edits", show_label=False)
    with gr.Accordion("Run record (JSON)", open=False):
        record = gr.JSON(label="Current run")
    timer = PollTimer(POLL_SECONDS, active=False)

    preset_outputs = [iterations, lr, params, start_step, end_step, anchor, keep, trajectories, pool]
    concept.change(partial(on_concept, state), [concept, method, num_steps], [kind, *preset_outputs], api_visibility="private")
    for trigger in (kind.input, method.input, num_steps.release):
        trigger(partial(preset_fields, state), [concept, kind, method, num_steps], preset_outputs, api_visibility="private")
    settings = {"concept": concept, "kind": kind, "method": method, "iterations": iterations, "lr": lr, "params": params,
                "anchor": anchor, "preserve": keep, "seed": seed, "num_steps": num_steps, "start_step": start_step, "end_step": end_step,
                "previews": previews, "robust": robust, "trajectories": trajectories, "pool": pool, "also": also,
                "schedule": schedule}
    run.click(friendly(partial(start, state, list(settings))), list(settings.values()), [progress, timer], api_name="start_unlearning", show_progress="hidden")
    stop.click(friendly(partial(cancel_job, state, PURPOSE)), None, progress, api_name="cancel_unlearning", concurrency_limit=None, show_progress="hidden")
    outputs = [progress, loss, preview_heading, gallery, summary, record, timer]
    timer.tick(friendly(partial(status, state)), None, outputs, api_name="unlearn_status", concurrency_limit=None, show_progress="hidden")
    return {"concept": concept, "kind": kind, "also": also, "method": method, "iterations": iterations, "num_steps": num_steps,
            "start": start_step, "end": end_step, "summary": summary, "timer": timer, "refresh": (partial(status, state), outputs)}

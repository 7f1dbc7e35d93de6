"""Glue shared by the tabs: readable errors, the progress display, concept choices, image sizes."""
from __future__ import annotations

import functools
import html
import logging
import math
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np
from PIL import Image

from kscu.config import UnlearnConfig
from kscu.domain import Domain, default_domain
from kscu.jobs import JobBusy, JobSnapshot
from kscu.models import LoadedModel
from kscu.validation import CheckedConfig, check_config
from ui.poll_timer import PollTimer
from ui.state import METHOD_NAMES, WorkbenchState

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
"""How often a running job's progress is polled."""
PREVIEW_SIZE = 256
"""Preview and sample images are upscaled (pixel for pixel) to at least this size."""
EXPECTED_ERRORS = (ValueError, JobBusy, FileNotFoundError)
"""Errors whose message already says what to do (kscu raises ValueError subclasses for bad input)."""


def friendly(fn: Callable) -> Callable:
    """Wrap an event function so that failures reach the page as a readable message (gr.Error),
    never as a traceback. Unexpected errors are logged with their traceback for the console."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except EXPECTED_ERRORS as exc:
            raise gr.Error(hide_server_paths(str(exc)), print_exception=False) from None
        except Exception as exc:
            log.exception("unexpected error in %s", getattr(fn, "__name__", fn))
            raise gr.Error(hide_server_paths(f"Unexpected error ({type(exc).__name__}: {exc}). The details are in the console log."),
                           print_exception=False) from None

    return wrapper


_SERVER_PATH = re.compile(re.escape(tempfile.gettempdir().rstrip("/")) + r"/[^\s'\"()<>,;]+")
"""A path in the server's temporary folder: gradio's upload cache and the workbench's downloads."""


def hide_server_paths(text: str) -> str:
    """The message with every server temp path shortened to its file name: a visitor needs to know
    which file, not where the server keeps its uploads (the hash folders of gradio's cache)."""
    def file_name(match: re.Match) -> str:
        path = match.group(0)
        trimmed = path.rstrip(".:")  # a sentence's punctuation after a path is not part of it
        return Path(trimmed).name + path[len(trimmed):]

    return _SERVER_PATH.sub(file_name, text)


def check_request(config: UnlearnConfig, model: LoadedModel) -> CheckedConfig:
    """The request resolved and checked, every concept's part (kscu.validation: a wrong setting
    raises with its name), its warnings shown as message boxes."""
    checked = check_config(config, model)
    for warning in checked.warnings:
        gr.Warning(warning)
    return checked


def edit_choices(state: WorkbenchState) -> list[tuple[str, str]]:
    """Every kept edit (last KSCU, last robust KSCU, last ESD) as (label, key), labelled with its
    concept. All are always offered (a choice that is not there yet says so when used), so API
    clients, which see the choices the page was built with, can name any."""
    state.adopt_finished()
    return [(f"last {name} edit ({', '.join(state.results[m].config.concepts) if m in state.results else 'none yet'})", m)
            for m, name in METHOD_NAMES.items()]


def kept_edits(state: WorkbenchState) -> gr.CheckboxGroup:
    """The kept edits to choose from, the current one ticked."""
    return gr.CheckboxGroup(choices=edit_choices(state), value=[state.current] if state.current else [])


def domain_of(state: WorkbenchState) -> Domain:
    """The loaded model's domain, or before any model is loaded the default one (kscu.domain)."""
    return state.model.domain if state.model is not None else default_domain()


def kinds_for(domain: Domain) -> list[str]:
    """Concept kinds with a preset on this domain's models (the demo model adds colour, background)."""
    return list(domain.kinds)


def concept_choices(domain: Domain) -> list[tuple[str, str]]:
    """Dropdown examples (label, concept) of the domain; any other text is allowed too."""
    return domain.examples()


def kind_of(concept: str, domain: Domain) -> str | None:
    """The kind of `concept` when the domain can tell (e.g. 'striped' -> 'style'), else None."""
    return domain.infer_kind(concept) if concept.strip() else None


def resolve_kind(concept: str, kind: str | None, domain: Domain) -> str:
    """The kind chosen, or for "auto" / none the domain's kind of the concept; a ConfigError
    (a ValueError, shown as a message) when the domain cannot tell it."""
    return domain.resolve_kind(concept, kind)


def clean_concept(concept: str | None) -> str:
    text = (concept or "").strip()
    if not text:
        raise ValueError("Type or choose the concept to erase first (for example 'striped').")
    return text


def upscale(images: np.ndarray | list, size: int = PREVIEW_SIZE) -> list[Image.Image]:
    """uint8 NHWC images enlarged by an integer factor with NEAREST (what the model drew, pixel
    for pixel, instead of the browser's blur) to at least `size` pixels."""
    out = []
    for image in images:
        image = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
        factor = max(1, math.ceil(size / max(image.size)))
        out.append(image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST))
    return out


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


_STATE_WORDS = {"queued": "Waiting", "running": "Running", "done": "Finished", "failed": "Failed", "cancelled": "Cancelled"}


def progress_html(snap: JobSnapshot | None, idle: str = "Not started yet.") -> str:
    """A progress bar with percent, elapsed time, time left and the job's message."""
    if snap is None:
        return f'<div class="kscu-progress idle">{html.escape(idle)}</div>'
    state, fraction = snap.state, snap.progress
    eta = snap.eta
    if eta is None and state == "running" and fraction > 0.01:
        eta = snap.elapsed * (1 - fraction) / fraction
    parts = [f"{fraction:.0%}", f"elapsed {duration(snap.elapsed)}"]
    if state == "running":
        parts.append(f"about {duration(eta)} left" if eta is not None and math.isfinite(eta) else "estimating the time left")
    if snap.cancel_requested and snap.active:
        parts.append("stopping…")
    message = hide_server_paths(snap.error if state == "failed" else snap.message)
    message = "" if message in ("queued", "running") else message  # the head already says so
    return (
        f'<div class="kscu-progress {state}" data-job="{snap.id}">'
        f'<div class="kscu-progress-head"><b>{_STATE_WORDS[state]}</b>: {html.escape(snap.name)} · {" · ".join(parts)}</div>'
        f'<div class="kscu-bar"><div style="width:{fraction * 100:.1f}%"></div></div>'
        f'<div class="kscu-progress-msg">{html.escape(message or "")}</div></div>'
    )


def cancel_job(state: WorkbenchState, purpose: str) -> str:
    """Ask the tab's job (``state.jobs[purpose]``) to stop at its next iteration; its progress display."""
    job = state.jobs.get(purpose)
    if job is None:
        return progress_html(None, idle="Nothing is running.")
    if not job.is_finished:
        job.cancel()
    return progress_html(job.snapshot())


def image_panel(title: str, elem_id: str) -> tuple[gr.Markdown, gr.Image]:
    """A grid image with its title above it (Gradio's floating label would cover the grid's
    first row label); the title is returned too, for panels whose title changes."""
    heading = gr.Markdown(f"#### {title}", label=f"{title}: title", show_label=False)
    image = gr.Image(label=title, show_label=False, elem_id=elem_id, type="pil", interactive=False, format="png", buttons=["download", "fullscreen"])
    return heading, image


def timer_state(snap: JobSnapshot | None) -> PollTimer:
    """Keep polling while the job is queued or running, stop once it has finished."""
    return PollTimer(active=snap is not None and snap.active)

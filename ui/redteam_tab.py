"""Red team tab: attack the kept edits the way an adversary would (one job: kscu.attack.red_team)
and show how often the erased concept comes back: the ASR table, the plain and attacked images on
the same seeds, and a verdict in words."""
from __future__ import annotations

import math
from functools import partial

import gradio as gr
import numpy as np
import pandas as pd

from kscu.attack import AttackTarget, RedTeamReport, attack_target, red_team
from kscu.attack_config import AttackBudget
from kscu.grids import blur, image_grid
from kscu.jobs import Job
from kscu.models import LoadedModel
from kscu.trainer import UnlearnResult
from ui.common import (POLL_SECONDS, PollTimer, cancel_job, domain_of, edit_choices, friendly, image_panel, kept_edits, progress_html,
                       timer_state)
from ui.results import BLUR_SHARE, MIN_CELL, needs_blur
from ui.spaces_gpu import ANALYSIS_SECONDS, gpu
from ui.state import METHOD_NAMES, WorkbenchState

PURPOSE = "redteam"
ATTACK_LABELS = [("Learned prompt tokens (white box, the default)", "embedding"), ("Other wordings (black box)", "rephrase"),
                 ("Free soft prompt (upper bound)", "soft")]
DEFAULTS = AttackBudget()
SHOWN_SEEDS = 8
"""Columns of the image grid: the first seeds only, so each image is big enough to judge."""


@gpu(ANALYSIS_SECONDS)
def _work(state: WorkbenchState, model: LoadedModel, chosen: dict[str, UnlearnResult], target: AttackTarget, attack: str,
          budget: AttackBudget, job: Job) -> RedTeamReport:
    unets = {label: state.edited_unet(result) for label, result in chosen.items()}
    return red_team(model, unets, target.concept, target.kind, attack, budget, avoid=target.also_erased, on_progress=job.report,
                    should_stop=lambda: job.cancel_requested)


def start(state: WorkbenchState, methods: list[str], attack: str, steps: float, tokens: float, prompts: float,
          target: str | None = None) -> tuple:
    """Start the attack on the ticked edits (and the unedited model) against `target`, one concept
    they all erased (None: the first edit's first); clears the last views."""
    model = state.require_model()
    if not methods:
        raise ValueError("Tick at least one edit to attack (run Quick erase or Unlearn first).")
    chosen = {f"{METHOD_NAMES[m]} edit": state.result(m) for m in METHOD_NAMES if m in methods}
    attacked = attack_target({label: result.configs for label, result in chosen.items()}, target)
    budget = AttackBudget(prompts=int(prompts), steps=int(steps), tokens=int(tokens))
    budget.check()
    if model.domain.detector(attacked.concept, attacked.kind) is None:
        raise ValueError(f"Attack success needs a judge that reads {attacked.concept!r}: load the model with a judge in the Model tab.")
    job = state.submit(PURPOSE, f"{attack} attack on {' and '.join(chosen)} ({attacked.concept!r})",
                       partial(_work, state, model, chosen, attacked, attack, budget))
    return (progress_html(job.snapshot()), PollTimer(active=True), *empty())


def try_to_break(state: WorkbenchState) -> tuple:
    """Quick erase's "Try to break it": the default attack on the current edit, in this tab."""
    state.result()  # a clear message when there is no edit yet
    started = start(state, [state.current], "embedding", DEFAULTS.steps, DEFAULTS.tokens, DEFAULTS.prompts)
    return (gr.Tabs(selected="redteam"), kept_edits(state), *started)


def target_choices(state: WorkbenchState, methods: list[str] | None) -> gr.Dropdown:
    """The concepts the ticked edits erased, the first ticked edit's first concept chosen: an
    edit that erased several concepts is attacked on one per run."""
    state.adopt_finished()
    concepts: list[str] = []
    for method in methods or []:
        if method in state.results:
            concepts += [c.concept for c in state.results[method].configs if c.concept not in concepts]
    return gr.Dropdown(choices=concepts, value=concepts[0] if concepts else None)


def empty() -> tuple:
    return gr.Dataframe(visible=False), None, ""


def asr_table(report: RedTeamReport) -> pd.DataFrame:
    """One row per model: ASR with the plain prompts and with the attack, each with its 95 % interval."""
    def cell(rate) -> str:
        low, high = rate.interval
        return f"{rate.value:.0%} ({low:.0%}–{high:.0%})"

    return pd.DataFrame({
        "model": list(report.runs),
        "plain prompts": [cell(r.pre) for r in report.runs.values()],
        f"{report.attack} attack": [cell(r.post) for r in report.runs.values()],
        "attack time": [f"{r.seconds:.0f} s" for r in report.runs.values()],
    })


def images(report: RedTeamReport, blurred: bool):
    """Rows: per model, the plain prompts' images, then the attacked ones; columns: the first
    SHOWN_SEEDS seeds, the same in every row."""
    cols = min(SHOWN_SEEDS, len(report.seeds))
    rows = [im[:cols] for run in report.runs.values() for im in (run.plain_images, run.attack_images)]
    labels = [f"{label}: {side}" for label in report.runs for side in ("plain prompts", "attacked")]
    stacked = np.concatenate(rows)
    if blurred:
        stacked = blur(stacked, max(2.0, stacked.shape[2] * BLUR_SHARE))
    return image_grid(stacked, len(rows), cols, labels, scale=max(1, math.ceil(MIN_CELL / stacked.shape[2])))


def view(state: WorkbenchState) -> tuple:
    snap = state.snapshot(PURPOSE)
    report: RedTeamReport | None = snap.result if snap is not None and snap.done else None
    if report is None:
        return empty()
    blurred = needs_blur(domain_of(state), report.kind)
    lines = [report.verdict(label) for label in report.runs]
    lines.append(f"ASR = share of attack images in which {report.judge} reads {report.concept!r}; {len(report.seeds)} images per "
                 f"model, the same prompts and seeds for every model; in brackets the 95 % interval.")
    if report.attack == "rephrase":
        lines.append("Wordings tried: " + "; ".join(f"*{p}*" for p in report.attack_prompts[:6]) + " …")
    elif report.reference_seconds:
        lines.append(f"The attacker first drew reference images of the concept with the unedited model ({report.reference_seconds:.0f} s).")
    if blurred:
        lines.append("Images are blurred because they may show nudity.")
    return gr.Dataframe(asr_table(report), visible=True), images(report, blurred), "\n\n".join(lines)


def status(state: WorkbenchState) -> tuple:
    snap = state.snapshot(PURPOSE)
    progress = progress_html(snap, idle="Tick the edits to attack and press Attack.")
    if snap is None or not snap.done:
        return (progress, *(gr.skip(),) * 3, timer_state(snap))
    return (progress, *view(state), timer_state(snap))


def build(state: WorkbenchState) -> dict:
    gr.Markdown(
        "### Can anyone get it back?\n"
        "An erased concept that no longer appears for the prompts you tested may still come back for others. This tab "
        "attacks the edit as an adversary would and counts how often the concept reappears (the attack success rate, ASR), "
        "for the unedited model and each edit, on the same prompts and seeds. **Learned prompt tokens**: a few new token "
        "embeddings trained against the edited model to bring the concept back (like UnlearnDiffAtk and textual "
        "inversion). **Other wordings**: rephrasings the erasure never trained or tested on. **Free soft prompt**: the "
        "strongest prompt-side attacker, an upper bound."
    )
    with gr.Row():
        with gr.Column(scale=2):
            methods = gr.CheckboxGroup(edit_choices(state), label="Edits to attack", info="The unedited model is always attacked too.")
            target = gr.Dropdown([], value=None, label="Concept to attack", allow_custom_value=True,
                                 info="An edit that erased several concepts is attacked on one per run.")
            attack = gr.Radio(ATTACK_LABELS, value="embedding", label="Attack")
        with gr.Column(scale=2):
            steps = gr.Slider(10, 1000, value=DEFAULTS.steps, step=10, label="Attack steps", info="Learning steps of the token and soft-prompt attacks.")
            tokens = gr.Slider(1, 8, value=DEFAULTS.tokens, step=1, label="Learned tokens", info="New prompt tokens the attacker learns.")
            prompts = gr.Slider(8, 200, value=DEFAULTS.prompts, step=4, label="Attack images per model",
                                info="More images, a narrower interval (24 images: about ±15 points).")
    with gr.Row():
        run = gr.Button("Attack", variant="primary")
        stop = gr.Button("Cancel", variant="stop")
    progress = gr.HTML(progress_html(None, idle="Tick the edits to attack and press Attack."), label="Progress", elem_id="redteam-progress")
    table = gr.Dataframe(label="Attack success rate (share of images showing the erased concept)", interactive=False, visible=False,
                         elem_id="redteam-asr")
    _, grid = image_panel(f"Plain prompts and attacked prompts on the same seeds (the first {SHOWN_SEEDS})", "redteam-images")
    notes = gr.Markdown(label="Verdict", show_label=False, elem_id="redteam-verdict")
    timer = PollTimer(POLL_SECONDS, active=False)
    views = [table, grid, notes]

    methods.change(partial(target_choices, state), methods, target, api_visibility="private", queue=False, show_progress="hidden")
    run.click(friendly(partial(start, state)), [methods, attack, steps, tokens, prompts, target], [progress, timer, *views],
              api_name="red_team", show_progress="hidden")
    stop.click(friendly(partial(cancel_job, state, PURPOSE)), None, progress, api_name="cancel_red_team", concurrency_limit=None,
               show_progress="hidden")
    timer.tick(friendly(partial(status, state)), None, [progress, *views, timer], api_name="red_team_status", concurrency_limit=None,
               show_progress="hidden")
    return {"methods": methods, "timer": timer, "outputs": [progress, timer, *views], "refresh_choices": (partial(kept_edits, state), methods),
            "refresh": (partial(status, state), [progress, *views, timer])}

"""Matplotlib figures for the workbench: influence curves and the live loss curve.

Figures are built on matplotlib.figure.Figure with an Agg canvas, never through pyplot: no
global figure registry to leak from a long-running UI, and no display needed. Sized for a web
page (about 8 x 4 inches).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kscu.influence import InfluenceReport

X_LABEL = "denoising step (0 = pure noise)"
_CAUSAL_STYLE = {"causal_from": ("--", "concept from step k on"), "causal_until": ("-.", "concept up to step k")}


def _figure(height: float, rows: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(8, height), layout="tight")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    return fig, list(axes)


def influence_figure(reports: Sequence[InfluenceReport], window: tuple[int, int] | None = None) -> Figure:
    """Influence curves of several concepts, one colour per concept.

    Top panel: the relative conditional gap (solid, shaded band = std over seeds). Bottom panel,
    when any report has causal curves: detection rate by switch point, dashed for "concept from
    step k on", dash-dot for "concept up to step k". Each panel shows `window` [start, end) shaded,
    each report's suggested S as a vertical line in its colour and the paper presets dotted.
    """
    if not reports:
        raise ValueError("no influence reports to plot: run kscu.influence.analyze first")
    num_steps = {r.num_steps for r in reports}
    if len(num_steps) > 1:
        raise ValueError(f"reports use different schedules ({sorted(num_steps)} steps): analyse all concepts with the same num_steps to overlay them")
    K = num_steps.pop()
    causal = any(r.curve("causal_from") or r.curve("causal_until") for r in reports)
    fig, axes = _figure(5.0 if causal else 4.0, 2 if causal else 1)
    colours = [f"C{i % 10}" for i in range(len(reports))]

    gap_ax = axes[0]
    for report, colour in zip(reports, colours):
        gap = report.curve("gap")
        if gap is not None:
            value, spread = np.array(gap.value), np.array(gap.spread)
            gap_ax.plot(gap.step_index, value, "-", color=colour, lw=2, label=f"{report.concept}: gap")
            gap_ax.fill_between(gap.step_index, value - spread, value + spread, color=colour, alpha=0.2, lw=0)
    gap_ax.set_ylabel("relative gap\n|eps(c) - eps(a)| / |eps(a)|")
    gap_ax.set_title("Where the concept is decided (measured on the base model)")

    if causal:
        causal_ax = axes[1]
        for report, colour in zip(reports, colours):
            for measure, (style, label) in _CAUSAL_STYLE.items():
                curve = report.curve(measure)
                if curve is not None:
                    causal_ax.plot(curve.step_index, curve.value, style, color=colour, marker="o", ms=3, label=f"{report.concept}: {label}")
        causal_ax.set_ylabel("detection rate")
        causal_ax.set_ylim(-0.05, 1.05)

    paper = sorted({(r.paper_start, r.kind) for r in reports})
    for ax in axes:
        if window is not None:
            ax.axvspan(window[0], window[1], color="0.85", zorder=0, label=f"window [{window[0]}, {window[1]})" if ax is axes[0] else None)
        for report, colour in zip(reports, colours):
            ax.axvline(report.suggested_start, color=colour, lw=1.2, alpha=0.8, label=f"{report.concept}: suggested S = {report.suggested_start}" if ax is axes[0] else None)
        for start, kind in paper:
            ax.axvline(start, color="0.3", ls=":", lw=1.5, label=f"paper preset S = {start} ({kind})" if ax is axes[0] else None)
        ax.set_xlim(0, K)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best", framealpha=0.8)
    axes[-1].set_xlabel(X_LABEL)
    return fig


def loss_figure(losses: Sequence[float], steps: Sequence[int]) -> Figure:
    """Loss per iteration, its running mean, and (right axis) the key step k each iteration
    trained, so the sawtooth of the Key Step Table explains the loss's ups and downs.
    `steps` is UnlearnResult.steps (or Progress.step_index as it arrives)."""
    if len(losses) != len(steps):
        raise ValueError(f"{len(losses)} losses but {len(steps)} step indices: pass one step index per iteration")
    fig, (ax,) = _figure(4.0)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    if not losses:
        ax.text(0.5, 0.5, "no iterations yet", ha="center", va="center", transform=ax.transAxes, color="0.4")
        return fig
    iterations = np.arange(1, len(losses) + 1)
    loss = np.asarray(losses, dtype=float)
    width = max(1, min(50, len(loss) // 10))
    cumulative = np.concatenate([[0.0], np.cumsum(loss)])
    running = (cumulative[iterations] - cumulative[np.maximum(iterations - width, 0)]) / np.minimum(iterations, width)
    step_ax = ax.twinx()
    step_ax.plot(iterations, steps, ".", color="0.6", ms=2, label="key step k")
    step_ax.set_ylabel("key step k", color="0.4")
    ax.plot(iterations, loss, "-", color="C0", lw=0.8, alpha=0.4, label="loss")
    ax.plot(iterations, running, "-", color="C0", lw=2, label=f"running mean ({width})")
    ax.set_zorder(step_ax.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    return fig

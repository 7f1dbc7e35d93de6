"""Matplotlib figures for the workbench: influence curves, the live loss curve and a sweep's cells.

Figures are built on matplotlib.figure.Figure with an Agg canvas, never through pyplot: no
global figure registry to leak from a long-running UI, and no display needed. Sized for a web
page (about 8 x 4 inches).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from kscu.influence import NEIGHBOUR_MEASURE, InfluenceReport

if TYPE_CHECKING:
    from kscu.sweep import SweepResult

X_LABEL = "denoising step (0 = pure noise)"
_CAUSAL_STYLE = {"causal_from": ("--", "o", "concept from step k on"), "causal_until": ("-.", "^", "concept up to step k")}


def _figure(height: float, rows: int = 1) -> tuple[Figure, list]:
    # constrained layout: tight like tight_layout, and it makes room for a legend outside the axes
    fig = Figure(figsize=(8, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    return fig, list(axes)


def influence_figure(reports: Sequence[InfluenceReport], window: tuple[int, int] | None = None) -> Figure:
    """Influence curves of several concepts, one colour per concept.

    Top panel: the relative conditional gap (solid, shaded band = std over seeds). Bottom panel,
    when any report has causal curves: detection rate by switch point, dashed for "concept from
    step k on", dash-dot for "concept up to step k", dotted for the neighbours' mean "up to step k"
    (when measured). Both panels show `window` [start, end)
    shaded, each report's suggested S as a vertical line in its colour and the paper presets as
    dotted grey lines. One legend outside the axes keys colours to concepts and line styles to
    measures, so it never hides a curve however many concepts are overlaid.
    """
    if not reports:
        raise ValueError("no influence reports to plot: run kscu.influence.analyze first")
    num_steps = {r.num_steps for r in reports}
    if len(num_steps) > 1:
        raise ValueError(f"reports use different schedules ({sorted(num_steps)} steps): analyse all concepts with the same num_steps to overlay them")
    K = num_steps.pop()
    causal = any(r.curve(m) for r in reports for m in _CAUSAL_STYLE)
    fig, axes = _figure(5.0 if causal else 4.0, 2 if causal else 1)
    colours = [f"C{i % 10}" for i in range(len(reports))]

    gap_ax = axes[0]
    for report, colour in zip(reports, colours):
        gap = report.curve("gap")
        if gap is not None:
            value, spread = np.array(gap.value), np.array(gap.spread)
            gap_ax.plot(gap.step_index, value, "-", color=colour, lw=2)
            gap_ax.fill_between(gap.step_index, value - spread, value + spread, color=colour, alpha=0.2, lw=0)
    gap_ax.set_ylabel("relative gap\n|eps(c) - eps(a)| / |eps(a)|")
    gap_ax.set_title("Where the concept is decided (base model)")
    if causal:
        for report, colour in zip(reports, colours):
            for measure, (style, marker, _) in _CAUSAL_STYLE.items():
                curve = report.curve(measure)
                if curve is not None:
                    axes[1].plot(curve.step_index, curve.value, ls=style, color=colour, marker=marker, ms=4)
            neighbours = [c for c in report.curves if c.measure == NEIGHBOUR_MEASURE]
            if neighbours:
                mean = np.mean([c.value for c in neighbours], axis=0)
                axes[1].plot(neighbours[0].step_index, mean, ls=":", color=colour, marker="x", ms=4, lw=1.2)
        axes[1].set_ylabel("detection rate")
        axes[1].set_ylim(-0.05, 1.05)

    presets: dict[int, list[str]] = {}
    for report in reports:
        presets.setdefault(report.paper_start, []).append(report.kind)
    for ax in axes:
        if window is not None:
            ax.axvspan(window[0], window[1], color="0.88", zorder=0)
        for report, colour in zip(reports, colours):
            ax.axvline(report.suggested_start, color=colour, lw=1.2, alpha=0.8)
        for start in presets:
            ax.axvline(start, color="0.3", ls=":", lw=1.5)
        ax.set_xlim(0, K)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(X_LABEL)

    handles = [Line2D([], [], color=c, lw=2, label=f"{r.concept} (S = {r.suggested_start})") for r, c in zip(reports, colours)]
    handles.append(Line2D([], [], color="0.3", lw=2, label="gap, band = std"))
    if causal:
        handles += [Line2D([], [], color="0.3", ls=style, marker=marker, ms=4, label=label) for style, marker, label in _CAUSAL_STYLE.values()]
        if any(c.measure == NEIGHBOUR_MEASURE for r in reports for c in r.curves):
            handles.append(Line2D([], [], color="0.3", ls=":", marker="x", ms=4, lw=1.2, label="neighbours up to\nstep k (mean)"))
    handles.append(Line2D([], [], color="0.3", lw=1.2, label="suggested S"))
    paper = ", ".join(f"{'/'.join(sorted(set(kinds)))} {start}" for start, kinds in sorted(presets.items()))
    handles.append(Line2D([], [], color="0.3", ls=":", lw=1.5, label=f"paper preset S:\n{paper}"))
    if window is not None:
        handles.append(Patch(color="0.88", label=f"window [{window[0]}, {window[1]})"))
    # borderpad: room between the legend's longest label and the image's edge, which clipped a letter in the browser
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False, handlelength=3, borderpad=1.2)
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
    step_ax.plot(iterations, steps, "o", color="C1", ms=2.5, alpha=0.5, mec="none", label="key step k")
    step_ax.set_ylabel("key step k", color="C1")
    ax.plot(iterations, loss, "-", color="C0", lw=0.8, alpha=0.4, label="loss")
    ax.plot(iterations, running, "-", color="C0", lw=2, label=f"running mean ({width})")
    ax.set_zorder(step_ax.get_zorder() + 1)
    ax.patch.set_visible(False)
    handles = ax.get_legend_handles_labels()[0] + step_ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    return fig


def sweep_figure(result: "SweepResult") -> Figure:
    """One panel per concept: each cell's UA (x) against its worst retention change in points (y,
    with the change's paired 95 % interval), one colour per setting, and the goal's two lines, so
    a setting that keeps the rest on every seed sits in the top-right corner on every panel. Each
    setting's points sit a hair apart in x, so that settings with the same figures stay visible."""
    plan = result.plan
    fig = Figure(figsize=(4.2 * len(plan.concepts), 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(plan.concepts), squeeze=False)[0]
    for ax, concept in zip(axes, plan.concepts):
        for i, setting in enumerate(plan.settings):
            cells = [c for c in result.cells if c.setting == setting.name and c.concept == concept]
            worst = [c.drops[c.worst] for c in cells]
            x = [c.ua.value + (i - (len(plan.settings) - 1) / 2) * 0.003 for c in cells]
            y = [-w.value * 100 for w in worst]
            spread = [[(w.high - w.value) * 100 if w.high is not None else 0 for w in worst],
                      [(w.value - w.low) * 100 if w.low is not None else 0 for w in worst]]
            ax.errorbar(x, y, yerr=spread, fmt="o", color=f"C{i % 10}", label=setting.name, capsize=2)
        ax.axhline(-plan.max_drop * 100, color="grey", ls=":", lw=1)
        ax.axvline(plan.ua_goal, color="grey", ls=":", lw=1)
        ax.set(xlabel="UA (erased share)", ylabel="worst retention change, points", title=concept)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig

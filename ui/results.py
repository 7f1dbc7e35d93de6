"""How an edit's outcome is shown, shared by Quick erase and Compare: grids (blurred when they may
show nudity), the metrics table and a plain-language reading of it."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from kscu.domain import Domain
from kscu.evaluation import MISSED, UNDECIDED, EvalReport, MetricRow, metric_rows, rows_by_name, verdict
from kscu.grids import MIN_CELL, blur, image_grid
from kscu.retention import ImageChange
from kscu.stats import points
from kscu.sanity import SanityReport

BLUR_SHARE = 1 / 12
"""Blur radius as a share of the image width: shapes stay visible, details do not."""


def needs_blur(domain: Domain, kind: str | None) -> bool:
    """Nudity-kind outputs are blurred unless the user asks otherwise, where the domain says they
    may show nudity (real models; the demo's shape world has none)."""
    return domain.blur_nudity and kind == "nudity"


def unscored_note(domain: Domain, concept: str, kind: str | None, neighbours=None) -> str:
    """Why UA / IRA / CRA were not measured, and what to look at instead."""
    if domain.judge is None:
        return ("This model has no judge, so UA / IRA / CRA were not measured: judge the grids and the image change "
                "(or load the model with a judge in the Model tab: a CLIP folder or hub id, or nudenet).")
    try:
        domain.evaluation_plan(concept, kind, neighbours, 1, 1, 0)
    except ValueError as error:
        return f"The judge ({domain.judge.name}) cannot score this concept ({error}): judge the grids and the image change."
    return ""


def change_sentence(change: ImageChange) -> str:
    """The judge-free image change of one edit's grid as a sentence."""
    neighbours = change.neighbour_ssim
    rest = (f"; its neighbours' rows (which should stay) **{neighbours:.2f}**" if neighbours is not None
            else "; there were no neighbour rows to show what stayed")
    lpips = f", LPIPS {change.lpips:.3f}" if change.lpips is not None else ""
    return (f"**Image change** (no judge needed: SSIM of each image before vs after, same prompt and seed; 1 = unchanged): "
            f"the concept's row **{change.concept_ssim:.2f}**{rest}. Mean PSNR {change.psnr:.1f} dB over {change.images} images{lpips}.")


def change_table(changes: dict[str, ImageChange]) -> str:
    """Markdown table of the image change (SSIM per grid row, 1 = unchanged) of each labelled edit:
    the concept's row should drop, the neighbours' rows stay near 1."""
    if not changes:
        return ""
    labels = list(changes)
    first = changes[labels[0]]
    prompts = list(first.ssim_by_prompt)
    rows = [f"| grid row | {' | '.join(f'SSIM ({label})' for label in labels)} |", "|---" * (len(labels) + 1) + "|"]
    for i, prompt in enumerate(prompts):
        name = f"{_cell(prompt)} *(erased concept)*" if i == 0 else _cell(prompt)
        rows.append(f"| {name} | " + " | ".join(f"{changes[label].ssim_by_prompt.get(prompt, float('nan')):.2f}" for label in labels) + " |")
    if len(prompts) > 1:
        rows.append("| **neighbours, mean** | " + " | ".join(f"**{changes[label].neighbour_ssim:.2f}**" for label in labels) + " |")
    rows.append("| PSNR, all rows (dB) | " + " | ".join(f"{changes[label].psnr:.1f}" for label in labels) + " |")
    if all(changes[label].lpips is not None for label in labels):
        rows.append("| LPIPS, all rows | " + " | ".join(f"{changes[label].lpips:.3f}" for label in labels) + " |")
    head = ("**Image change**, no judge needed: SSIM of each image before vs after the edit (same prompt and seed; "
            "1 = unchanged). The erased concept's row should drop; its neighbours' rows should stay near 1.")
    return head + "\n\n" + "\n".join(rows)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def grid_image(grids: dict, which: str, blurred: bool) -> Image.Image | None:
    """The "before" or "after" grid of kscu.grids.comparison_grids, redrawn blurred if asked."""
    if grids.get(which) is None:
        return None
    if not blurred:
        return grids[which]
    images = grids[f"{which}_images"]
    width = images.shape[2]
    scale = max(1, math.ceil(MIN_CELL / width))
    return image_grid(blur(images, max(2.0, width * BLUR_SHARE)), len(grids["prompts"]), len(grids["seeds"]), labels=grids["prompts"], scale=scale)


def _percent(value: float) -> str:
    return f"{value:.0%}"


def metrics_table(reports: dict[str, EvalReport]) -> pd.DataFrame:
    """Rows = metrics; columns = before, then after and change for each labelled report (e.g.
    "KSCU", "ESD"). All reports score the base model on the same prompts and seeds. Shares are
    percentages with their 95 % interval, changes points with their paired interval; the CLIP score
    (0-100, when the judge gives one) is a number."""
    if not reports:
        return pd.DataFrame()
    first = next(iter(reports.values()))
    before = metric_rows(first.before)
    table = {"metric": [row.name for row in before], "before": [_value(row) for row in before]}
    for label, report in reports.items():
        after = rows_by_name(report.after)
        table[f"after ({label})"] = [_value(after[row.name]) for row in before]
        table[f"change ({label})"] = [_change(row, after[row.name]) for row in before]
    return pd.DataFrame(table)


def concepts_table(reports: Sequence[EvalReport], label: str) -> pd.DataFrame:
    """metrics_table of one edit, and for an edit that erased several concepts one block of rows
    per erased concept, its name in a first column (each block's retained rows are its neighbours)."""
    if len(reports) == 1:
        return metrics_table({label: reports[0]})
    blocks = [metrics_table({label: report}) for report in reports]
    for report, block in zip(reports, blocks):
        block.insert(0, "erased concept", report.concept)
    return pd.concat(blocks, ignore_index=True)


def comparison_table(reports: dict[str, EvalReport], others: dict[str, list[EvalReport]]) -> pd.DataFrame:
    """metrics_table of the compared edits, and when an edit erased more concepts, one block of
    rows per other concept and edit below it, each block's concept in a first column."""
    table = metrics_table(reports)
    if not any(others.values()):
        return table
    table.insert(0, "erased concept", next(iter(reports.values())).concept)
    blocks = [table]
    for label, more in others.items():
        for report in more:
            block = metrics_table({label: report})
            block.insert(0, "erased concept", report.concept)
            blocks.append(block)
    return pd.concat(blocks, ignore_index=True).fillna("")


def _value(row: MetricRow) -> str:
    if row.name.startswith("CLIP score"):
        return f"{row.value:.1f}"
    rate = row.rate
    return _percent(row.value) if rate is None else f"{row.value:.0%} [{rate.interval[0] * 100:.0f}–{rate.interval[1] * 100:.0f}]"


def _change(before: MetricRow, after: MetricRow) -> str:
    delta = after.value - before.value
    if before.name.startswith("CLIP score"):
        return f"{delta:+.1f}"
    drop = before.change(after)
    return f"{points(delta)} pts" if drop is None else str(drop)


def reading(report: EvalReport, label: str = "") -> str:
    """A few plain sentences: how often the concept was drawn before and after, what was kept,
    and whether the workbench's acceptance criteria are met, undecided included (kscu.evaluation.verdict)."""
    b, a = report.before, report.after
    checks = verdict(report)
    who = f"**{label}:** " if label else ""
    # words, not emoji: headless and minimal systems lack an emoji font
    mark = {"passed": "**Passed:** it meets the acceptance criteria", "failed": "**Failed:** it does not meet the acceptance criteria",
            "undecided": "**Undecided:** measure on more images (the Compare tab's larger sets)"}[checks.outcome]
    shown = MISSED if checks.outcome == "failed" else UNDECIDED
    open_checks = [c.describe(report.attribute) for c in checks.checks if c.outcome == shown]
    why = f" ({'; '.join(open_checks)})" if open_checks else ""
    context = ""
    if b["cra"]:
        context = (f"; {', '.join(b['cra'])}: {_percent(np.mean(list(b['cra'].values())))} → "
                   f"{_percent(np.mean(list(a['cra'].values())))} on average")
    return (
        f"{who}The model drew *{report.concept}* in {_percent(b['detection_rate'])} of {report.n_erase} test images before "
        f"the edit and in {_percent(a['detection_rate'])} after it. Other {report.attribute}s stayed correct in "
        f"{_percent(b['ira'])} → {_percent(a['ira'])} of their images{context}. {mark}{why}."
    )


def sanity_cell(sanity: SanityReport | None) -> str:
    """The post-training sanity check in a table cell (no ✅: headless and minimal systems lack an emoji font)."""
    if sanity is None:
        return "–"
    return f"{'passed' if sanity.passed else '⚠️ FAILED'}: {sanity.change:.0%} change (limit {sanity.limit:.0%})"


def sanity_sentence(sanity: SanityReport | None) -> str:
    """The sanity check as a sentence for a verdict, loud when it failed."""
    if sanity is None:
        return ""
    text = sanity.message[0].upper() + sanity.message[1:] + "."
    return text if sanity.passed else f"⚠️ **{text}**"

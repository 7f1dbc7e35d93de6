"""How an edit's outcome is shown, shared by Quick erase and Compare: grids (blurred when they may
show nudity), the metrics table and a plain-language reading of it."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from PIL import Image

from kscu.evaluation import DETECTED_BEFORE, ERASED_AFTER, MAX_RETENTION_DROP, EvalReport, metric_rows, verdict
from kscu.grids import MIN_CELL, blur, image_grid
from kscu.sanity import SanityReport

BLUR_SHARE = 1 / 12
"""Blur radius as a share of the image width: shapes stay visible, details do not."""


def needs_blur(family: str, kind: str) -> bool:
    """Nudity-kind outputs of real models are blurred unless the user asks otherwise."""
    return family != "demo" and kind == "nudity"


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
    "KSCU", "ESD"). All reports score the same base model on the same prompts and seeds."""
    if not reports:
        return pd.DataFrame()
    first = next(iter(reports.values()))
    before = metric_rows(first.before)
    table = {"metric": [name for name, _ in before], "before": [_percent(v) for _, v in before]}
    for label, report in reports.items():
        after = dict(metric_rows(report.after))
        table[f"after ({label})"] = [_percent(after[name]) for name, _ in before]
        table[f"change ({label})"] = [f"{(after[name] - b) * 100:+.0f} pts" for name, b in before]
    return pd.DataFrame(table)


def _criterion(name: str, attribute: str) -> str:
    """evaluation.verdict's check names in words."""
    if name == "detected_before":
        return f"the unedited model must draw the concept in at least {DETECTED_BEFORE:.0%} of the images"
    if name == "erased_after":
        return f"the edited model may draw it in at most {ERASED_AFTER:.0%}"
    kept = f"may change by at most {MAX_RETENTION_DROP * 100:.0f} points"
    if name == "ira_kept":
        return f"the other {attribute}s {kept}"
    return f"{name.removeprefix('cra_').removesuffix('_kept')} {kept}"


def reading(report: EvalReport, label: str = "") -> str:
    """A few plain sentences: how often the concept was drawn before and after, what was kept,
    and whether the workbench's acceptance criteria are met."""
    b, a = report.before, report.after
    checks = verdict(report)
    other_before = np.mean(list(b["cra"].values()))
    other_after = np.mean(list(a["cra"].values()))
    kinds = ", ".join(b["cra"])
    who = f"**{label}:** " if label else ""
    mark = "✅ meets" if checks["passed"] else "⚠️ does not meet"
    failed = [_criterion(name, report.attribute) for name, ok in checks.items() if not ok and name != "passed"]
    why = f" (not met: {'; '.join(failed)})" if failed else ""
    return (
        f"{who}The model drew *{report.concept}* in {_percent(b['detection_rate'])} of {report.n_erase} test images before "
        f"the edit and in {_percent(a['detection_rate'])} after it. Other {report.attribute}s stayed correct in "
        f"{_percent(b['ira'])} → {_percent(a['ira'])} of their images; {kinds}: {_percent(other_before)} → "
        f"{_percent(other_after)} on average. {mark} the acceptance criteria{why}."
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

"""What every long piece of work shares: one cancellation exception base.

The trainer, the influence analysis, the evaluation, the recipes and the job runner each stop
early when asked; catching `Cancelled` handles every one of them, and a job that raises it ends
"cancelled" rather than "failed".
"""
from __future__ import annotations


class Cancelled(Exception):
    """Work stopped because the caller asked it to; nothing it would have changed was changed."""

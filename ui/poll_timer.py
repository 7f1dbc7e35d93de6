"""PollTimer: the tabs' polling timer, left out of the HTTP API.

Why: each status endpoint turns its tab's timer on and off, which means nothing to a script
polling it, and a gr.Timer has no label, so every status endpoint returned an unlabelled
`value_N`. A component whose skip_api is true is left out of the API description, and
gradio_client drops its value from the results. On the page it is the same gr.Timer
(is_template: the frontend draws the base class).

Its own module because gradio writes a type stub (.pyi) next to the module of every component
subclass the first time it is imported; here that stub is this small file's, not a copy of a
larger module that would go stale.
"""
from __future__ import annotations

import gradio as gr


class PollTimer(gr.Timer):
    """gr.Timer without an API presence (see the module docstring)."""

    is_template = True

    @property
    def skip_api(self) -> bool:
        return True

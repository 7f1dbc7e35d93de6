"""KSCU Workbench library: Key Step Concept Unlearning for Stable-Diffusion-style models.

Never imports gradio: the UI (ui/), the CLI (python -m kscu) and Python users share this API.
"""
import logging


class _DropTorchvisionFallbackNotice(logging.Filter):
    """transformers says, once per image processor class, that it falls back to the PIL backend
    because torchvision is missing. The workbench never uses those processors for anything that
    backend changes, and torchvision is left out on purpose (it pulls a CUDA torch): the notice
    tells a user nothing they can act on, so it is dropped. Every other transformers message stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed); falling back" not in record.getMessage()


logging.getLogger("transformers.utils.import_utils").addFilter(_DropTorchvisionFallbackNotice())

__version__ = "0.1.0"

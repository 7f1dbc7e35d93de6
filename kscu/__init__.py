"""KSCU Workbench library: Key Step Concept Unlearning for Stable-Diffusion-style models.

Never imports gradio: the UI (ui/), the CLI (python -m kscu) and Python users share this API.
"""

__version__ = "0.1.0"

"""What the export command offers, without importing torch (so `python -m kscu --help` stays fast):
the LoRA layouts, their file names in an export folder, and the default rank (kscu.lora)."""

LAYOUTS = ("diffusers", "kohya")
LAYOUT_FILES = {"diffusers": "pytorch_lora_weights.safetensors", "kohya": "lora_kohya.safetensors"}
"""File names in a LoRA export folder: diffusers' own name, so `load_lora_weights(folder)` finds it."""
DEFAULT_RANK = 8
"""The smallest rank from which on the LoRAs of the demo presets' edits of striped, star and red
keep UA and IRA within 2 points of the full edit's (benchmarks/lora_rank.py, docs/results.md:
star's edit needs 8, striped's 2)."""

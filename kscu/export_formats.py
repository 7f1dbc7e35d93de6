"""What the export command offers, without importing torch (so `python -m kscu --help` stays fast):
the LoRA layouts, their file names in an export folder, and the default rank (kscu.lora)."""

LAYOUTS = ("diffusers", "kohya")
LAYOUT_FILES = {"diffusers": "pytorch_lora_weights.safetensors", "kohya": "lora_kohya.safetensors"}
"""File names in a LoRA export folder: diffusers' own name, so `load_lora_weights(folder)` finds it."""
DEFAULT_RANK = 4
"""The smallest rank whose LoRA of the style preset's edit stays within 2 points of the full
edit's UA and IRA on the demo model (benchmarks/lora_rank.py, docs/results.md)."""

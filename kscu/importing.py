"""Edits made outside the workbench, opened so they are evaluated, compared, attacked and exported
like ours.

`open_edit` takes any of:
- a KSCU edit (kscu.export.save_edit: a .safetensors file or its folder);
- a LoRA file in the diffusers/peft or kohya layout (kscu.lora), merged into the loaded model;
- a .safetensors of UNet tensors with diffusers parameter names: only the trained ones (what ESD's
  and the KSCU authors' code save) or a whole UNet state dict (optionally under `unet.`).
A foreign file says nothing about what it erased: the caller names the concept (`--concept`;
a LoRA this workbench wrote names its own).
Only the tensors that differ from the loaded model are kept, so a whole-UNet import is as small as
the edit it holds. Anything else (a full checkpoint, another architecture, a pickle) is refused
with a message that says what it is and what to do. Nothing here unpickles.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from kscu.config import IMPORTED, UnlearnConfig
from kscu.export import EDIT_FILE, FORMAT, EditLoadError, load_edit
from kscu.lora import LoraError, is_lora, merge_lora
from kscu.models import PICKLE_SUFFIXES, LoadedModel
from kscu.trainer import UnlearnResult

UNET_PREFIX = "unet."
CHECKPOINT_PREFIXES = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")


def _read(path: Path, tensors: bool = True) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The file's metadata and (unless tensors=False, for a look at the header only) its tensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}, ({k: f.get_tensor(k) for k in f.keys()} if tensors else {})
    except (SafetensorError, OSError) as e:
        raise EditLoadError(f"{path} is not a valid .safetensors file ({e})") from None


def _unet_tensors(tensors: dict[str, torch.Tensor], model: LoadedModel, path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors that differ from the model's UNet, by diffusers name; refuses what is not
    a UNet of this model's architecture."""
    if any(k.startswith(CHECKPOINT_PREFIXES) for k in tensors):
        raise EditLoadError(f"{path} is a whole single-file checkpoint (original layout), not an edit: "
                            "load it as the model instead (Model tab, or --model FILE)")
    names = {k.removeprefix(UNET_PREFIX): v for k, v in tensors.items()}
    base = dict(model.unet.named_parameters())
    unknown = sorted(set(names) - set(base))
    if unknown:
        raise EditLoadError(f"{path}: {len(unknown)} of its {len(names)} tensors are not in {model.source}'s UNet "
                            f"(e.g. {unknown[0]}): it is not a UNet edit for this architecture (diffusers parameter names "
                            "expected); load the model it was made for")
    for name, value in names.items():
        if tuple(value.shape) != tuple(base[name].shape):
            raise EditLoadError(f"{path}: {name} is {tuple(value.shape)} in the file but {tuple(base[name].shape)} in "
                                f"{model.source}'s UNet: it was made for another architecture; load the model it was made for")
    return {name: value.to(base[name].dtype) for name, value in names.items()
            if not torch.equal(value.to(base[name].dtype), base[name].detach().cpu())}


def _foreign(params: dict[str, torch.Tensor], model: LoadedModel, concept: str | None, kind: str | None,
             path: Path, what: str) -> UnlearnResult:
    if not concept or not concept.strip():
        raise EditLoadError(f"{path} is {what} and does not say what it erased: name the concept "
                            "(--concept on the command line, the Concept field in the Export tab)")
    if not params:
        raise EditLoadError(f"{path} is {what} but changes nothing in {model.source}'s UNet: it is this model's own weights")
    first, *rest = [c.strip() for c in concept.split(",") if c.strip()]  # "striped, red": an edit that erased both
    return UnlearnResult(
        config=UnlearnConfig(first, kind=kind or model.domain.resolve_kind(first, None), method=IMPORTED, also=tuple(rest)),
        params=params, base_source=model.source, base_hash=model.model_hash, family=model.family,
        warnings=[f"imported from {path} ({what}): how it was made is unknown"],
        others=[UnlearnConfig(c, kind=model.domain.resolve_kind(c, None), method=IMPORTED) for c in rest],
    )


def open_edit(path: str | os.PathLike, model: LoadedModel, concept: str | None = None, kind: str | None = None) -> UnlearnResult:
    """Any edit file, ours or foreign, as an UnlearnResult for `model` (see the module docstring).
    `concept` (and optionally `kind`) are needed for foreign files; for ours they come from the file."""
    path = Path(path).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix == ".safetensors" and _read(path, tensors=False)[0].get("format") == FORMAT):
        return load_edit(path)
    if not path.is_file():
        raise EditLoadError(f"{path} does not exist; pass an edit .safetensors file, a LoRA file or the folder save_edit wrote "
                            f"(holding {EDIT_FILE})")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise EditLoadError(f"{path}: pickle files can run code when loaded and are not imported; convert it to .safetensors")
    if path.suffix.lower() != ".safetensors":
        raise EditLoadError(f"{path}: unknown edit file type {path.suffix!r}; pass a .safetensors file")
    meta, tensors = _read(path)
    if is_lora(list(tensors)):
        try:  # a LoRA this workbench wrote names its concept
            return _foreign(merge_lora(tensors, model, path), model, concept or meta.get("concepts") or meta.get("concept"),
                            kind or meta.get("kind") or None,
                            path, "a LoRA file")
        except LoraError as error:
            raise EditLoadError(str(error)) from None
    if not tensors:
        raise EditLoadError(f"{path} holds no tensors")
    what = "a whole UNet state dict" if len(tensors) == len(dict(model.unet.named_parameters())) else "a file of UNet tensors"
    return _foreign(_unet_tensors(tensors, model, path), model, concept, kind, path, what)

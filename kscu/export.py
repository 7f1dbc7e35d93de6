"""Saving, loading and exporting edits.

An edit is small: only the UNet tensors unlearning changed (cross-attention alone is ~3% of an
SD1 UNet), stored as one .safetensors file whose metadata says what was erased, how, and on which
base model (hash included), so it can be shared, re-applied and repeated. Nothing here unpickles:
a file from someone else can only hold tensors and strings.
For tools that expect a whole model, `export_pipeline` writes a standard diffusers folder with the
edited UNet and `export_single_file` one original-layout SD1.x checkpoint (A1111, ComfyUI); LoRA
files are kscu.lora's.

Tensor names are the diffusers UNet2DConditionModel parameter names. Every write is atomic (a
temporary file or folder, then a rename), so an interrupted save never leaves half a file.
"""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import diffusers
import safetensors
import torch
import transformers
from diffusers import StableDiffusionPipeline
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

import kscu
from kscu.config import UnlearnConfig
from kscu.models import LoadedModel
from kscu.sanity import SanityReport
from kscu.sd_configs import to_ldm_state_dict
from kscu.trainer import UnlearnResult

FORMAT = "kscu-edit"
FORMAT_VERSION = "1"
EDIT_FILE = "edit.safetensors"
RUN_FILE = "run.json"
PROVENANCE_FILE = "kscu_edit.json"
RUN_FIELDS = ("losses", "steps", "seconds", "unet_forwards", "unet_backwards", "warnings", "sanity", "others", "trained_concepts")
"""What the edit file's "run" metadata holds besides the config."""


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_read_umask()
"""What a plain open() would give (0644 under the usual umask), read once at import. safetensors
writes its files 0600, which hides an edit from the other users of a shared folder."""


class EditLoadError(ValueError):
    """An edit file could not be loaded; the message says why."""


def version_info() -> dict[str, str]:
    """Library versions, recorded with every edit (results can depend on them)."""
    return {
        "kscu": getattr(kscu, "__version__", "unknown"),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def _provenance(result: UnlearnResult) -> dict:
    """Everything that describes an edit, JSON-typed (run.json and kscu_edit.json)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "base_model": result.base_source,
        "base_hash": result.base_hash,
        "family": result.family,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": version_info(),
        "config": result.config.to_dict(),
        "losses": result.losses,
        "steps": result.steps,
        "seconds": result.seconds,
        "unet_forwards": result.unet_forwards,
        "unet_backwards": result.unet_backwards,
        "warnings": result.warnings,
        "sanity": result.sanity.to_dict() if result.sanity is not None else None,
        "others": [other.to_dict() for other in result.others],
        "trained_concepts": result.trained_concepts,
    }


def _metadata(provenance: dict) -> dict[str, str]:
    """safetensors metadata is str -> str: the headline fields flat, the rest as JSON."""
    cfg = provenance["config"]
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **{key: "" if cfg[key] is None else str(cfg[key]) for key in
           ("method", "concept", "kind", "start_step", "end_step", "num_steps", "iterations", "lr", "params", "seed", "anchor")},
        "preserve": ",".join(cfg.get("preserve", ())),
        "concepts": ",".join([cfg["concept"], *cfg.get("also", ())]),
        **{key: str(provenance[key]) for key in ("base_model", "base_hash", "family", "created")},
        **{f"{name}_version": version for name, version in provenance["versions"].items()},
        "config": json.dumps(cfg),
        "run": json.dumps({key: provenance[key] for key in RUN_FIELDS}),
    }
    return meta


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """write(tmp) next to `path`, then rename over it: readers see the old file or the new one."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def slug(text: str, empty: str = "concept") -> str:
    """`text` as a file-name-safe part: lower case, dashes, at most 40 characters (run ids, edit file names)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower())[:40].strip("-") or empty


class OutputError(ValueError):
    """An output path is unsafe or unwritable; the message says why and what to do. Raised before
    any work, so nothing is trained or written for a path that would fail."""


MODEL_MARKERS = ("model_index.json",)
"""A folder holding one of these (or any folder above it) is a model: edits are not written into it
unasked, where they could be mistaken for, or replace, the model's own files."""


def _model_folder(path: Path) -> Path | None:
    """The model folder `path` lies in, if any (diffusers pipeline folders, or a component folder
    such as unet/ with its config.json next to its weights)."""
    for folder in [path.parent, *path.parent.parents]:
        if any((folder / marker).is_file() for marker in MODEL_MARKERS):
            return folder
    parent = path.parent
    if (parent / "config.json").is_file() and any(parent.glob("diffusion_pytorch_model*")):
        return parent
    return None


def _is_edit(file: Path) -> bool:
    try:
        with safe_open(str(file), framework="pt") as f:
            return (f.metadata() or {}).get("format") == FORMAT
    except (SafetensorError, OSError):
        return False


def _check_writable(folder: Path) -> None:
    """The folder (or its nearest existing parent, where it would be made) takes a new file."""
    existing = next((p for p in [folder, *folder.parents] if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise OutputError(f"cannot make the folder {folder}: {existing} is a file; choose another output path")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise OutputError(f"cannot write to {existing} ({e.strerror or e}); choose a folder you can write to") from None


def check_edit_output(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Check where save_edit(result, out) would write, before any training; returns the edit file.

    Refused unless overwrite=True: an existing edit file or run record (a KSCU edit or not: a copy
    of a model's weights looks just like one), and any path inside a model folder. Always refused:
    a folder that cannot be written to, and an existing file as the output folder.
    """
    out = Path(out).expanduser()
    if out.suffix != ".safetensors" and out.is_file():
        raise OutputError(f"{out} is an existing file, not a folder; give a new folder or a path ending in .safetensors")
    file = out if out.suffix == ".safetensors" else out / EDIT_FILE
    if file.is_dir():
        raise OutputError(f"{file} is a folder; give a path ending in .safetensors that is not a folder, or the folder to write {EDIT_FILE} into")
    written = [file] if file == out else [file, out / RUN_FILE]
    if not overwrite:
        for path in written:
            if path.exists():
                what = "an earlier KSCU edit" if path.suffix != ".safetensors" or _is_edit(path) else "not a KSCU edit (it may be a model's weights)"
                raise OutputError(f"{path} already exists and is {what}; choose a new path, or overwrite it on purpose "
                                  "(--force on the command line, overwrite=True in Python)")
        model_folder = _model_folder(file)
        if model_folder is not None:
            raise OutputError(f"{file} lies inside the model folder {model_folder}; write edits outside model folders, "
                              "or on purpose with --force / overwrite=True")
    _check_writable(file.parent)
    return file


def check_new_file(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Check a path for one exported .safetensors file (a LoRA, a single-file checkpoint) before any
    work: it must end in .safetensors, not be a folder, and not exist unless overwrite=True."""
    path = Path(out).expanduser()
    if path.suffix != ".safetensors":
        raise OutputError(f"{path}: give a file name ending in .safetensors")
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name ending in .safetensors")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists; choose a new path, or replace it on purpose "
                          "(--force on the command line, overwrite=True in Python)")
    _check_writable(path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def save_edit(result: UnlearnResult, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Save an edit; returns the .safetensors file written.

    out ending in .safetensors: that one self-contained file. Otherwise a folder holding
    edit.safetensors and run.json (the same provenance, readable, with the loss curve).
    The path is checked first (check_edit_output: nothing existing is replaced unless overwrite).
    """
    out = Path(out).expanduser()
    file = check_edit_output(out, overwrite)
    file.parent.mkdir(parents=True, exist_ok=True)
    provenance = _provenance(result)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in result.params.items()}
    if file != out:
        write_atomically(out / RUN_FILE, lambda tmp: tmp.write_text(json.dumps({"edit": EDIT_FILE, **provenance}, indent=2)))
    write_atomically(file, lambda tmp: save_file(tensors, str(tmp), metadata=_metadata(provenance)))
    return file


def edit_stem(result: UnlearnResult) -> str:
    """A file name stem that says what an edit is: kscu-<concept slug>-<method>."""
    return f"kscu-{slug('-'.join(result.config.concepts))}-{result.config.method}"


def fallback_dir() -> Path:
    """Where an edit goes when its own path fails after training: the user's cache folder."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kscu" / "unsaved-edits"


@dataclass(frozen=True)
class SavedEdit:
    """Where an edit was written, and why not where it was asked to go (None if it was)."""

    path: Path
    failure: str | None = None


def save_edit_or_keep(result: UnlearnResult, out: str | os.PathLike, overwrite: bool = False) -> SavedEdit:
    """save_edit, and if that fails (disk full, permissions changed during training) the edit in
    fallback_dir() instead, so that a finished training is never lost; raises only if both fail."""
    try:
        return SavedEdit(save_edit(result, out, overwrite))
    except (OSError, OutputError) as error:
        reason = str(error) if isinstance(error, OutputError) else f"{error.strerror or error}"
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        fallback = fallback_dir() / f"{stamp}-{edit_stem(result)}-{uuid.uuid4().hex[:6]}.safetensors"
        return SavedEdit(save_edit(result, fallback), failure=f"could not save the edit to {out}: {reason}")


def load_edit(path: str | os.PathLike) -> UnlearnResult:
    """Load an edit saved by save_edit (a .safetensors file or its folder)."""
    path = Path(path).expanduser()
    file = path / EDIT_FILE if path.is_dir() else path
    if not file.is_file():
        where = f"no {EDIT_FILE} in the folder {path}" if path.is_dir() else f"{path} does not exist"
        raise EditLoadError(f"{where}; pass an edit .safetensors file or the folder save_edit wrote")
    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
            params = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError) as e:
        raise EditLoadError(f"{file} is not a valid .safetensors file ({e})") from None
    if "format" not in meta:
        raise EditLoadError(f"{file}: not a KSCU edit: metadata 'format' missing (it may be a model checkpoint; load it as a model instead)")
    if meta["format"] != FORMAT:
        raise EditLoadError(f"{file}: not a KSCU edit: metadata 'format' is {meta['format']!r}, expected {FORMAT!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise EditLoadError(f"{file}: edit format_version {meta.get('format_version')!r} is not supported "
                            f"(this KSCU reads {FORMAT_VERSION!r}); use a matching KSCU version")
    try:
        config = UnlearnConfig.from_dict(json.loads(meta["config"]))
        run = json.loads(meta.get("run", "{}"))
        others = [UnlearnConfig.from_dict(other) for other in run.get("others", [])]
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise EditLoadError(f"{file}: the edit's metadata is corrupt ({type(e).__name__}: {e})") from None
    return UnlearnResult(
        config=config,
        params=params,
        base_source=meta.get("base_model", ""),
        base_hash=meta.get("base_hash", ""),
        family=meta.get("family", ""),
        losses=run.get("losses", []),
        steps=run.get("steps", []),
        seconds=run.get("seconds", 0.0),
        unet_forwards=run.get("unet_forwards", 0),
        unet_backwards=run.get("unet_backwards", 0),
        warnings=run.get("warnings", []),
        sanity=SanityReport.from_dict(run["sanity"]) if run.get("sanity") else None,
        others=others,
        trained_concepts=run.get("trained_concepts", []),
    )


def check_compatible(result: UnlearnResult, model: LoadedModel) -> str | None:
    """None if the edit was made on this very model; a warning if on other weights of the same
    shape (applying an edit to a fine-tune can be deliberate); ValueError if it cannot fit."""
    shapes = {name: tuple(p.shape) for name, p in model.unet.named_parameters()}
    missing = sorted(set(result.params) - set(shapes))
    if missing:
        raise ValueError(f"this edit was made for another model: {len(missing)} of its {len(result.params)} tensors "
                         f"do not exist in {model.source}'s UNet (e.g. {missing[0]}); load the model it was made on ({result.base_source})")
    for name, tensor in result.params.items():
        if tuple(tensor.shape) != shapes[name]:
            raise ValueError(f"this edit was made for another model: {name} has shape {tuple(tensor.shape)} in the edit "
                             f"but {shapes[name]} in {model.source}; load the model it was made on ({result.base_source})")
    if result.base_hash != model.model_hash:
        return (f"this edit was made on {result.base_source} (hash {result.base_hash}), not on the loaded model "
                f"{model.source} (hash {model.model_hash}); the tensors fit, but its effect may differ")
    return None


def _edited_pipeline(model: LoadedModel, result: UnlearnResult) -> tuple[StableDiffusionPipeline, dict]:
    """The model's pipeline with the edit applied (a copy of the UNet; the base stays), and what the
    export records about the model it was applied to (check_compatible's warning included)."""
    warning = check_compatible(result, model)
    pipe = StableDiffusionPipeline(**{**model.pipe.components, "unet": result.apply(model)},
                                   requires_safety_checker=model.pipe.config.get("requires_safety_checker", False))
    return pipe, {"model": model.source, "model_hash": model.model_hash, "warning": warning}


def export_pipeline(model: LoadedModel, result: UnlearnResult, out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a full diffusers StableDiffusionPipeline folder with the edited UNet (safetensors only,
    in the model's dtype), plus kscu_edit.json (the edit's provenance and the model it was applied
    to), and the files the model's domain needs (a demo model keeps its classifier/, so load_model
    still sees a demo model).

    Written to a temporary folder, then renamed into place. An existing out_dir is used only if it
    is empty, or with overwrite=True if it is an earlier export (has kscu_edit.json): no unrelated
    folder is ever deleted, and no earlier export unasked.
    """
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        if not (out_dir / PROVENANCE_FILE).is_file():
            raise OutputError(f"{out_dir} already exists and is not an earlier KSCU export; choose a new or empty folder")
        if not overwrite:
            raise OutputError(f"{out_dir} holds an earlier KSCU export; choose a new folder, or replace it on purpose "
                              "(--force on the command line, overwrite=True in Python)")
    _check_writable(out_dir.parent)
    pipe, applied_to = _edited_pipeline(model, result)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex[:8]}.tmp")
    old = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex[:8]}.old")
    try:
        pipe.save_pretrained(tmp, safe_serialization=True)
        model.domain.export_files(tmp)
        provenance = {**_provenance(result), "edit_tensors": sorted(result.params),
                      "applied_to": applied_to}
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2))
        if out_dir.exists():
            out_dir.rename(old)
        try:
            tmp.rename(out_dir)
        except OSError:
            if old.exists():
                old.rename(out_dir)  # put the earlier export back
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def export_single_file(model: LoadedModel, result: UnlearnResult, out: str | os.PathLike, overwrite: bool = False,
                       dtype: torch.dtype | None = None) -> Path:
    """Write the edited model as one original-layout SD1.x .safetensors checkpoint (LDM key names:
    what A1111 and ComfyUI load, and `StableDiffusionPipeline.from_single_file` with the model's
    configs), with the edit's provenance in its metadata. dtype None keeps the model's; float16
    halves the file. Atomic; an existing file is replaced only with overwrite=True."""
    path = check_new_file(out, overwrite)
    pipe, applied_to = _edited_pipeline(model, result)
    provenance = {**_provenance(result), "applied_to": applied_to}
    tensors = to_ldm_state_dict(pipe, dtype=dtype)
    write_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt", "kscu_edit": json.dumps(provenance)}))
    return path

"""An edit as a LoRA file, for the tools people generate with: diffusers/peft
(`StableDiffusionPipeline.load_lora_weights`) and kohya's layout (A1111, ComfyUI).

An edit changes whole weight matrices; a LoRA holds each change as a product up @ down of rank r.
`low_rank` takes the best rank-r approximation of every changed linear weight (truncated SVD of
W_edit - W_base, Eckart-Young), so what a LoRA file of rank r can hold is exactly what
`LoraEdit.as_edit` gives the evaluation: the rank table of the benchmarks measures the file, not
the full edit. A LoRA holds no biases: bias changes (cross-attention's output projection) are
dropped and listed in `LoraEdit.dropped`; tensors that are neither (convolutions, norms: the
"noxattn" and "full" parameter subsets) are refused with a message that names the exports that do
hold them.

Both layouts store alpha = rank (scale 1), so W = W_base + up @ down on load. Tensor names:
diffusers `unet.<module>.lora_A.weight` / `lora_B.weight`; kohya `lora_unet_<module with _>` with
`.lora_down.weight`, `.lora_up.weight` and `.alpha`, the SD1.x naming kohya's trainer writes.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from kscu.export import check_new_file, write_atomically
from kscu.export_formats import DEFAULT_RANK, LAYOUT_FILES, LAYOUTS
from kscu.models import LoadedModel
from kscu.trainer import UnlearnResult

DIFFUSERS_PREFIX = "unet."
KOHYA_PREFIX = "lora_unet_"


class LoraError(ValueError):
    """A LoRA cannot be made from this edit or read from this file; the message says why."""


@dataclass(frozen=True)
class LoraFactors:
    """One layer's change, up @ down: up is (out, rank), down is (rank, in)."""

    down: torch.Tensor
    up: torch.Tensor

    def delta(self) -> torch.Tensor:
        return self.up @ self.down


@dataclass(frozen=True)
class LoraEdit:
    """The rank-r approximation of an edit: one LoraFactors per changed linear layer (keyed by the
    diffusers module name, without `.weight`), the tensors it cannot hold, and the edit it came from."""

    rank: int
    layers: dict[str, LoraFactors]
    dropped: tuple[str, ...]
    source: UnlearnResult

    def as_edit(self, model: LoadedModel) -> UnlearnResult:
        """The edit a loader of this LoRA applies: base weights plus up @ down, biases unchanged."""
        base = dict(model.unet.named_parameters())
        params = {f"{name}.weight": (base[f"{name}.weight"].detach().float().cpu() + f.delta()).to(base[f"{name}.weight"].dtype)
                  for name, f in self.layers.items()}
        warnings = [*self.source.warnings, *([self.dropped_message()] if self.dropped else [])]
        return replace(self.source, params=params, warnings=warnings)

    def dropped_message(self) -> str:
        return (f"a LoRA holds no biases: the changes to {len(self.dropped)} bias tensors "
                f"(e.g. {self.dropped[0]}) are not in the file")

    def file_bytes(self) -> int:
        """Tensor bytes in either layout (kohya adds one scalar alpha per layer)."""
        return sum(f.down.numel() * f.down.element_size() + f.up.numel() * f.up.element_size() for f in self.layers.values())


def _changes(edit: UnlearnResult, model: LoadedModel) -> dict[str, torch.Tensor]:
    """Edit minus base for every tensor the edit changes (float32, CPU)."""
    base = dict(model.unet.named_parameters())
    out = {}
    for name, value in edit.params.items():
        if name not in base:
            raise LoraError(f"the edit does not fit {model.source}: {name} is not in its UNet; load the model it was made on")
        delta = value.detach().float().cpu() - base[name].detach().float().cpu()
        if delta.any():
            out[name] = delta
    return out


def max_rank(edit: UnlearnResult, model: LoadedModel) -> int:
    """The largest rank that means anything for this edit: its smallest changed matrix's smaller side."""
    shapes = [min(d.shape) for n, d in _changes(edit, model).items() if n.endswith(".weight") and d.dim() == 2]
    if not shapes:
        raise LoraError("the edit changes no linear weights: there is nothing a LoRA could hold")
    return min(shapes)


def low_rank(edit: UnlearnResult, model: LoadedModel, rank: int = DEFAULT_RANK) -> LoraEdit:
    """The best rank-`rank` approximation of every changed linear weight (truncated SVD).

    Raises LoraError for a rank outside 1..max_rank(edit) and for an edit that changes tensors a
    LoRA cannot hold other than biases (convolutions, norm weights)."""
    changes = _changes(edit, model)
    other = sorted(n for n, d in changes.items() if not n.endswith(".bias") and not (n.endswith(".weight") and d.dim() == 2))
    if other:
        raise LoraError(f"a LoRA holds linear layers only; this edit also changes {len(other)} other tensors (e.g. {other[0]}, "
                        "trained with the 'noxattn' or 'full' parameters): export it as a single file or a pipeline instead")
    limit = max_rank(edit, model)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= limit:
        raise LoraError(f"rank: {rank!r} is not possible for this edit; choose a whole number from 1 to {limit} "
                        f"(its smallest changed layer has {limit} rows or columns)")
    layers = {}
    for name, delta in sorted(changes.items()):
        if name.endswith(".weight"):
            u, s, vh = torch.linalg.svd(delta, full_matrices=False)
            layers[name.removesuffix(".weight")] = LoraFactors(down=vh[:rank].contiguous(), up=(u[:, :rank] * s[:rank]).contiguous())
    dropped = tuple(sorted(n for n in changes if n.endswith(".bias")))
    return LoraEdit(rank=rank, layers=layers, dropped=dropped, source=edit)


def _tensors(lora: LoraEdit, layout: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    out = {}
    for name, f in lora.layers.items():
        down, up = f.down.to(dtype).contiguous(), f.up.to(dtype).contiguous()
        if layout == "diffusers":
            out[f"{DIFFUSERS_PREFIX}{name}.lora_A.weight"] = down
            out[f"{DIFFUSERS_PREFIX}{name}.lora_B.weight"] = up
        else:
            key = KOHYA_PREFIX + name.replace(".", "_")
            out[f"{key}.lora_down.weight"] = down
            out[f"{key}.lora_up.weight"] = up
            out[f"{key}.alpha"] = torch.tensor(float(lora.rank), dtype=dtype)
    return out


def _metadata(lora: LoraEdit, layout: str) -> dict[str, str]:
    """What the file says it is: the edit's headline fields, and for kohya the ss_* keys A1111 reads."""
    cfg = lora.source.config
    meta = {"format": "pt", "kscu_lora": "1", "kscu_layout": layout, "rank": str(lora.rank), "concept": cfg.concept,
            "concepts": ",".join(cfg.concepts),
            "kind": cfg.kind or "", "method": cfg.method, "base_model": lora.source.base_source,
            "base_hash": lora.source.base_hash, "dropped": json.dumps(list(lora.dropped)), "config": json.dumps(cfg.to_dict())}
    if layout == "kohya":
        meta.update({"ss_network_module": "networks.lora", "ss_network_dim": str(lora.rank),
                     "ss_network_alpha": str(float(lora.rank)), "ss_base_model_version": "sd_v1"})
    return meta


def save_lora(lora: LoraEdit, out: str | os.PathLike, layout: str = "diffusers", overwrite: bool = False,
              dtype: torch.dtype = torch.float16) -> Path:
    """Write the LoRA as one .safetensors file (float16 by default, as LoRAs are shared): `out`
    itself if it ends in .safetensors, else the layout's file in the folder `out` (LAYOUT_FILES).
    Atomic, and an existing file is replaced only with overwrite=True. Returns the path."""
    if layout not in LAYOUTS:
        raise LoraError(f"layout: {layout!r} is unknown; choose {' or '.join(LAYOUTS)}")
    out = Path(out).expanduser()
    path = check_new_file(out if out.suffix == ".safetensors" else out / LAYOUT_FILES[layout], overwrite)
    write_atomically(path, lambda tmp: save_file(_tensors(lora, layout, dtype), str(tmp), metadata=_metadata(lora, layout)))
    return path


def is_lora(names: list[str]) -> bool:
    """Whether a file's tensor names are LoRA tensors (either layout)."""
    return bool(names) and all(".lora_" in k or k.endswith(".alpha") for k in names)


def _layers_of(tensors: dict[str, torch.Tensor], model: LoadedModel, path: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """module name -> (down, up, alpha / rank) from a file in either layout."""
    linear = {n for n, m in model.unet.named_modules() if isinstance(m, torch.nn.Linear)}
    by_kohya = {KOHYA_PREFIX + n.replace(".", "_"): n for n in linear}
    layers = {}
    for key in tensors:
        if key.endswith(".lora_A.weight") or key.endswith(".lora_down.weight"):
            kohya = key.endswith(".lora_down.weight")
            stem = key.removesuffix(".lora_down.weight" if kohya else ".lora_A.weight")
            name = by_kohya.get(stem) if kohya else stem.removeprefix(DIFFUSERS_PREFIX)
            if name not in linear:
                raise LoraError(f"{path}: the LoRA's layer {stem!r} is not a linear layer of {model.source}'s UNet "
                                "(a LoRA for another architecture, or for the text encoder?); load the model it was made for")
            down = tensors[key]
            up = tensors.get(f"{stem}.lora_up.weight" if kohya else f"{stem}.lora_B.weight")
            if up is None:
                raise LoraError(f"{path}: {stem} has a down matrix but no up matrix; the file is incomplete")
            alpha = tensors.get(f"{stem}.alpha")
            scale = float(alpha) / down.shape[0] if alpha is not None else 1.0
            layers[name] = (down.float(), up.float(), scale)
    if not layers:
        raise LoraError(f"{path}: no LoRA layers found (expected unet.*.lora_A/B.weight or lora_unet_*.lora_down/up.weight)")
    return layers


def read_lora(path: str | os.PathLike, model: LoadedModel) -> dict[str, torch.Tensor]:
    """The UNet weights a LoRA file gives when merged into `model`, by diffusers parameter name."""
    with safe_open(str(path), framework="pt") as f:
        return merge_lora({k: f.get_tensor(k) for k in f.keys()}, model, Path(path))


def merge_lora(tensors: dict[str, torch.Tensor], model: LoadedModel, path: Path) -> dict[str, torch.Tensor]:
    """LoRA tensors (either layout, read from `path`) merged into `model`'s weights (W + alpha / r
    * up @ down), by diffusers parameter name: what `kscu.importing` turns into an edit."""
    base = dict(model.unet.named_parameters())
    params = {}
    for name, (down, up, scale) in _layers_of(tensors, model, path).items():
        weight = base[f"{name}.weight"]
        if (up.shape[0], down.shape[1]) != tuple(weight.shape) or up.shape[1] != down.shape[0]:
            raise LoraError(f"{path}: {name} is {up.shape[0]} x {down.shape[1]} in the LoRA but {tuple(weight.shape)} in "
                            f"{model.source}'s UNet; load the model it was made for")
        params[f"{name}.weight"] = (weight.detach().float().cpu() + scale * (up @ down)).to(weight.dtype)
    return params

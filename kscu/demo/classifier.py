"""The exact judge of the demo world: a small CNN with one head per attribute.

Why a classifier rather than ground truth: generated images have no labels, so UA / IRA / CRA
need a judge; trained on unlimited procedural images it is near-perfect on clean renders, and
its accuracy on *generated* images is reported by the quality gate.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from kscu.demo.world import ATTRIBUTES


class ConceptClassifier(nn.Module):
    """Four-stage conv net (BatchNorm matters: without it shape learns far more slowly)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for out in (width, width * 2, width * 4, width * 4):
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.heads = nn.ModuleDict({name: nn.Linear(channels, len(values)) for name, values in ATTRIBUTES.items()})
        self.width = width

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images: float in [-1, 1], shape (N, 3, 64, 64) -> logits per attribute."""
        features = self.features(images)
        return {name: head(features) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Predicted value index per attribute."""
        self.eval()
        out: dict[str, list[np.ndarray]] = {name: [] for name in ATTRIBUTES}
        for i in range(0, len(images), batch_size):
            logits = self(images[i : i + batch_size].float())
            for name, value in logits.items():
                out[name].append(value.argmax(1).cpu().numpy())
        return {name: np.concatenate(v) for name, v in out.items()}

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / "classifier.safetensors"))
        (folder / "classifier.json").write_text(json.dumps({"width": self.width, "attributes": ATTRIBUTES}, indent=2))

    @classmethod
    def load(cls, folder: Path) -> "ConceptClassifier":
        config = json.loads((folder / "classifier.json").read_text())
        model = cls(width=config["width"])
        model.load_state_dict(load_file(str(folder / "classifier.safetensors")))
        return model.eval()


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W,3) -> float (N,3,H,W) in [-1, 1], the convention of the VAE too."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)

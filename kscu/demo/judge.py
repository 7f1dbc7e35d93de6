"""The demo world's exact classifier behind the Judge protocol (kscu.judges)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from kscu.demo.classifier import ConceptClassifier, to_tensor
from kscu.demo.world import ATTRIBUTES, BACKGROUNDS, COLOURS, SHAPES, STYLES


class ClassifierJudge:
    """Reads the labels of one attribute head: the head whose values include every label, its
    logits restricted to those labels. With all values of an attribute this is the classifier's
    own reading, so UA / IRA / CRA are exactly the demo world's."""

    name = "demo classifier (exact)"
    vocabulary = {"subjects": SHAPES, "colours": COLOURS, "styles": STYLES, "backgrounds": BACKGROUNDS}

    def __init__(self, classifier: ConceptClassifier, batch_size: int = 256) -> None:
        self.classifier = classifier
        self.batch_size = batch_size

    def read(self, images: np.ndarray, labels: Sequence[str]) -> np.ndarray:
        wanted = [label.strip().lower() for label in labels]
        head = next((a for a, values in ATTRIBUTES.items() if all(w in values for w in wanted)), None)
        if head is None:
            known = "; ".join(f"{a}: {', '.join(v)}" for a, v in ATTRIBUTES.items())
            raise ValueError(f"the demo classifier reads one attribute at a time; {', '.join(labels)} are not values of one of {known}")
        columns = [ATTRIBUTES[head].index(w) for w in wanted]
        device = next(self.classifier.parameters()).device
        out = []
        self.classifier.eval()
        with torch.no_grad():
            for i in range(0, len(images), self.batch_size):
                logits = self.classifier(to_tensor(images[i : i + self.batch_size]).to(device))[head]
                out.append(logits[:, columns].argmax(1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

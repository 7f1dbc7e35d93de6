"""Quality gate of the embedded demo model: does it draw what the prompts ask for?

Samples one image per combination of attribute values (4 x 5 x 5 x 3 = 300 prompts), each with
its own fixed seed, alternating the training templates and the held-out ones, with 25 DDIM
steps at the default guidance 3; the shipped classifier reads every attribute. Prints a table
and a JSON line, and saves a sample grid. Gate to ship: shape, colour, style >= 0.90 each,
background >= 0.85.

Run: python benchmarks/demo_model_quality.py [--model assets/demo-model] [--grid docs/demo_samples.png]
Runtime on the 2-core CPU: about a minute.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kscu.demo.classifier import to_tensor  # noqa: E402
from kscu.demo.prompts import HELD_OUT_TEMPLATES, TRAIN_TEMPLATES, prompt_for  # noqa: E402
from kscu.demo.world import ATTRIBUTES, Scene  # noqa: E402
from kscu.models import load_model  # noqa: E402
from kscu.sampling import Sampler  # noqa: E402

GATE = {"shape": 0.90, "colour": 0.90, "style": 0.90, "background": 0.85}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="demo model folder (default: the shipped one)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--grid", type=Path, default=Path("docs/demo_samples.png"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = load_model(args.model, device="cpu")
    scenes = [Scene(*values) for values in itertools.product(*ATTRIBUTES.values())]
    templates = [HELD_OUT_TEMPLATES[i % 2] if i % 2 else TRAIN_TEMPLATES[(i // 2) % 3] for i in range(len(scenes))]
    prompts = [prompt_for(s, t) for s, t in zip(scenes, templates)]
    seeds = [10_000 + i for i in range(len(scenes))]
    start = time.time()
    images = Sampler(model, args.steps, args.guidance).generate(model.unet, prompts, seeds, batch_size=50)
    seconds = time.time() - start
    predictions = model.domain.classifier.predict(to_tensor(images))
    labels = np.array([s.labels() for s in scenes])
    held_out = np.array([t in HELD_OUT_TEMPLATES for t in templates])
    result = {"images": len(scenes), "steps": args.steps, "guidance": args.guidance, "seconds": round(seconds, 1)}
    print(f"{'attribute':<12}{'all':>8}{'held-out':>10}{'gate':>7}")
    passed = True
    for i, name in enumerate(ATTRIBUTES):
        correct = predictions[name] == labels[:, i]
        result[name] = round(float(correct.mean()), 4)
        result[f"{name}_held_out"] = round(float(correct[held_out].mean()), 4)
        passed &= correct.mean() >= GATE[name]
        print(f"{name:<12}{correct.mean():>8.3f}{correct[held_out].mean():>10.3f}{GATE[name]:>7.2f}")
    result["gate_passed"] = bool(passed)
    print(f"sampling {len(scenes)} images took {seconds:.1f}s; gate {'PASSED' if passed else 'FAILED'}")
    print(json.dumps(result))
    pick = list(range(0, len(scenes), 5))[:60]
    rows = [np.concatenate(list(images[pick[r * 10 : (r + 1) * 10]]), axis=1) for r in range(6)]
    args.grid.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).resize((1280, 768), Image.Resampling.NEAREST).save(args.grid)
    (args.grid.with_suffix(".txt")).write_text("\n".join(f"row {r} col {c}: {prompts[pick[r * 10 + c]]}" for r in range(6) for c in range(10)) + "\n")
    print(f"sample grid: {args.grid} (prompts listed in {args.grid.with_suffix('.txt')})")


if __name__ == "__main__":
    main()

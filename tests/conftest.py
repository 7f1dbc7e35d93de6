"""Test-wide settings, applied at import time, before any test module imports huggingface_hub,
diffusers or gradio: everything stays offline, nothing phones home, and torch uses the 2 cores
of the reference machine (two torch jobs fighting over them each run 2.5-3x slower)."""
import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")  # no display: matplotlib draws to files only
os.environ["KSCU_RUNS"] = tempfile.mkdtemp(prefix="kscu-test-runs-")  # every command and app a test starts records here, not in runs/

import torch  # noqa: E402  (after the environment above)

torch.set_num_threads(2)

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO_MODEL = REPO / "assets" / "demo-model"


@pytest.fixture(scope="session")
def micro_demo_dir(tmp_path_factory) -> Path:
    """A micro demo model (same layout as assets/demo-model, random-quality weights) built by
    the real training script in ~10 s: plumbing tests need the layout, not the quality."""
    root = tmp_path_factory.mktemp("micro-demo")
    subprocess.run(
        [sys.executable, "-m", "kscu.demo.train", "--micro", "--work", str(root / "work"), "--out", str(root / "demo")],
        cwd=REPO, check=True, capture_output=True,
    )
    return root / "demo"


@pytest.fixture(scope="session")
def micro_clip_dir(tmp_path_factory) -> Path:
    """A micro CLIP judge folder (the shipped judge's layout, random-quality weights) built by the
    real training script in seconds."""
    root = tmp_path_factory.mktemp("micro-clip")
    subprocess.run(
        [sys.executable, "-m", "kscu.demo.train_judge", "--micro", "--work", str(root / "work"), "--out", str(root / "clip")],
        cwd=REPO, check=True, capture_output=True,
    )
    return root / "clip"


@pytest.fixture(scope="session")
def micro_demo(micro_demo_dir):
    """The micro demo model loaded on the CPU."""
    from kscu.models import load_model

    return load_model(str(micro_demo_dir), device="cpu")


@pytest.fixture(scope="session")
def demo_model():
    """The shipped, trained demo model (the real thing the behaviour tests judge)."""
    from kscu.models import load_model

    return load_model(None, device="cpu")


EDIT_PROMPTS = ["a striped red circle on a dark background", "a plain blue square on a light background"]
EDIT_SEEDS = [11, 12]


@pytest.fixture(scope="session")
def micro_edit(micro_demo):
    """A short real unlearning run on the micro model: its cross-attention tensors do differ from the base."""
    from kscu.config import UnlearnConfig
    from kscu.trainer import unlearn

    return unlearn(micro_demo, UnlearnConfig("striped", kind="style", iterations=10, num_steps=10, start_step=5, lr=1e-3))


def edit_images(model, unet):
    """Images of EDIT_PROMPTS / EDIT_SEEDS in 5 steps: what "the same images" means in the edit file tests."""
    from kscu.sampling import Sampler

    return Sampler(model, num_steps=5, guidance=3.0).generate(unet, EDIT_PROMPTS, EDIT_SEEDS)


# --- The workbench app, started as a user would (tests/test_app_api.py, tests/test_browser.py) ---


HANG_GUARD_SECONDS = 3600
"""The only wall-clock bound in the tests: long enough that a busy 2-core machine never reaches it,
short enough that a real hang ends the run. Work is bounded by iterations and image counts."""
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import running_workbench  # noqa: E402,F401  (the app as a subprocess; the soak benchmark starts it the same way)


@pytest.fixture(scope="session")
def workbench_model_dir(request) -> Path:
    """The shipped demo model when it is built (the CI has it), else the micro one."""
    if (DEMO_MODEL / "model_index.json").is_file():
        return DEMO_MODEL
    return request.getfixturevalue("micro_demo_dir")

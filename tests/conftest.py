"""Test-wide settings, applied at import time, before any test module imports huggingface_hub,
diffusers or gradio: everything stays offline, nothing phones home, and torch uses the 2 cores
of the reference machine (two torch jobs fighting over them each run 2.5-3x slower)."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")  # no display: matplotlib draws to files only

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
def micro_demo(micro_demo_dir):
    """The micro demo model loaded on the CPU."""
    from kscu.models import load_model

    return load_model(str(micro_demo_dir), device="cpu")


@pytest.fixture(scope="session")
def demo_model():
    """The shipped, trained demo model (the real thing the behaviour tests judge)."""
    from kscu.models import load_model

    return load_model(None, device="cpu")


# --- The workbench app, started as a user would (tests/test_app_api.py, tests/test_browser.py) ---

import contextlib  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

APP_START_SECONDS = 300
"""Starting the app imports torch, diffusers and gradio and loads the model: slow on a busy CPU."""


@pytest.fixture(scope="session")
def workbench_model_dir(request) -> Path:
    """The shipped demo model when it is built (the CI has it), else the micro one."""
    if (DEMO_MODEL / "model_index.json").is_file():
        return DEMO_MODEL
    return request.getfixturevalue("micro_demo_dir")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_workbench(model_dir: Path, log_path: Path, *extra: str):
    """`python app.py --port P --model DIR ...` in a subprocess; yields its URL once it answers,
    stops it afterwards. Fails with the log's tail if it exits or does not answer in time."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1"}
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--model", str(model_dir), *extra],
                                   cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + APP_START_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"app.py exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"app.py did not answer within {APP_START_SECONDS} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()

"""Shared pieces of the benchmark scripts: command line, loading, the UNet cost model, snapshot
scoring, tables and result files. Every script imports this module first (it sets the offline
environment and puts the repository on sys.path), so the scripts stay short and alike.

Why a cost model here: the trainer reports only its total number of UNet evaluations, while the
trade-off curves and the SD1.4 projections need the count per iteration. The model below
replays the trainer's rule (sample x_k from noise: 2k evaluations; trajectory reuse: 2) and
every script checks its sum against UnlearnResult.unet_forwards, so it cannot drift silently.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from kscu.config import UnlearnConfig  # noqa: E402
from kscu.domain import Domain, default_domain  # noqa: E402
from kscu.evaluation import concept_metrics, read_images  # noqa: E402
from kscu.models import LoadedModel  # noqa: E402
from kscu.sampling import Sampler  # noqa: E402
from kscu.trainer import Progress, UnlearnResult  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
"""Full runs write here (committed: keep files small)."""
SMOKE_RESULTS = REPO / "runs" / "benchmarks-smoke"
"""--smoke runs write here (runs/ is git-ignored), so a smoke run never overwrites a real result."""
EVAL_SEED = 1234
"""evaluate_edit's default prompt-set seed: the same prompts and noise as the workbench's evaluation."""


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


class BenchParser(argparse.ArgumentParser):
    """argparse with options that have a full-run default and a --smoke default.

    Options added with `option()` default to None; `parse()` fills what the user left out from
    the full or the smoke column, sets torch's thread count and creates the output folder.
    """

    def __init__(self, doc: str, model: bool = True) -> None:
        super().__init__(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
        self._defaults: dict[str, tuple[object, object, Callable]] = {}
        self.add_argument("--smoke", action="store_true", help="a seconds-long run with tiny settings that proves the plumbing (pair it with a micro --model)")
        if model:
            self.add_argument("--model", default=None, help="demo model folder (default: the embedded assets/demo-model)")
        self.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 2, the reference machine's cores; 1 with --smoke)")
        self.add_argument("--out", type=Path, default=None, help=f"folder for the results JSON and plots (default {RESULTS.relative_to(REPO)}; with --smoke {SMOKE_RESULTS.relative_to(REPO)})")

    def option(self, flag: str, full, smoke, help: str, type: Callable = str) -> None:
        """An option whose default is `full`, or `smoke` with --smoke; string defaults go through `type`."""
        dest = flag.lstrip("-").replace("-", "_")
        self._defaults[dest] = (full, smoke, type)
        self.add_argument(flag, type=type, default=None, help=f"{help} (default {full}; --smoke: {smoke})")

    def evaluation_options(self, n_erase=100, n_retain=120) -> None:
        """The evaluation set sizes and sampling steps (evaluate_edit's parameters)."""
        self.option("--n-erase", n_erase, 4, "erase-set prompts of the final evaluation", int)
        self.option("--n-retain", n_retain, 4, "retain-set prompts of the final evaluation", int)
        self.option("--eval-steps", 25, 4, "DDIM steps when sampling evaluation images", int)

    def training_options(self) -> None:
        """Iterations and schedule of the unlearning runs."""
        self.option("--iterations", None, 4, "unlearning iterations of every run (None: the KSCU preset's)", int)
        self.option("--num-steps", 50, 10, "DDIM steps of the training schedule (K)", int)

    def experiment_options(self, concepts: str, seeds: str) -> None:
        """Concepts and training seeds of a comparison, plus the training and evaluation options."""
        self.option("--concepts", concepts, "striped", "comma list of demo-world concepts (e.g. striped,star,red)", words)
        self.option("--seeds", seeds, "0", "comma list of training seeds", ints)
        self.training_options()
        self.evaluation_options()

    def parse(self, argv: list[str] | None = None) -> argparse.Namespace:
        args = self.parse_args(argv)
        for dest, (full, smoke, convert) in self._defaults.items():
            if getattr(args, dest) is None:
                value = smoke if args.smoke else full
                setattr(args, dest, convert(value) if isinstance(value, str) else value)
        torch.set_num_threads(args.threads or (1 if args.smoke else 2))
        args.out = args.out or (SMOKE_RESULTS if args.smoke else RESULTS)
        args.out.mkdir(parents=True, exist_ok=True)
        return args


def words(text: str) -> list[str]:
    """A comma list from the command line ("striped,star") as a list."""
    return [w.strip() for w in text.split(",") if w.strip()]


def ints(text: str) -> list[int]:
    return [int(w) for w in words(text)]


def floats(text: str) -> list[float]:
    return [float(w) for w in words(text)]


def load_demo(args: argparse.Namespace) -> LoadedModel:
    """The demo model named by --model (the embedded one by default), with its classifier."""
    from kscu.models import load_model

    model = load_model(args.model)
    if model.family != "demo":
        raise SystemExit(f"{args.model}: these benchmarks score with the demo world's classifier; pass a demo model folder")
    return model


def kind_of(concept: str) -> str:
    """The concept kind (preset) of a demo-world value: striped -> style, star -> object, red -> colour."""
    kind = default_domain().infer_kind(concept)
    if kind is None:
        raise SystemExit(f"{concept!r} is not a value of the demo world (see kscu/demo/world.py ATTRIBUTES)")
    return kind


# ---------------------------------------------------------------------------------------------
# cost model and snapshots
# ---------------------------------------------------------------------------------------------


@dataclass
class Cost:
    """UNet images of one unlearning run, as the trainer counts them (a guided batch of 2 is 2)."""

    sampling: list[int]
    """Per iteration, to reach x_k: 2k from noise, or 2 with trajectory reuse (KSCU only); with the
    preservation term also its trajectory's step, target and prediction; times the trajectories."""
    targets: list[int]
    """Per iteration, frozen targets: c and "", plus the anchor unless the phrasing's anchor is empty."""
    predictions: int
    """Per iteration, tuned predictions (the ones backpropagated): 2 with the lambda2 term, else 1, per trajectory."""

    def per_iteration(self) -> list[int]:
        return [s + t + self.predictions for s, t in zip(self.sampling, self.targets)]


def cost_model(config: UnlearnConfig, domain: Domain) -> Cost:
    """The UNet images `unlearn(model, config)` evaluates, without running it: the trainer's table,
    trajectory reuse and choice of phrasing (its random stream replayed: a phrasing with an empty
    anchor needs one frozen target less, and the generic domain mixes both)."""
    import random

    from kscu.concepts import augment_prompt
    from kscu.trainer import AUGMENT_SHARE, row_steps

    cfg = config.resolve(domain)
    pairs = domain.training_pairs(cfg.concept, cfg.kind, cfg.anchor, seed=cfg.seed)
    rng = random.Random(cfg.seed)  # the trainer's stream: a phrasing per trajectory, augmentation at the end
    augment_from = int(cfg.iterations * (1 - AUGMENT_SHARE)) if cfg.augment else cfg.iterations
    batch = cfg.trajectories  # every count below is per trajectory of the batch
    sampling, targets = [], []
    steps, kept, rows = [None] * batch, [None] * batch, pairs[:1] * batch
    table = row_steps(cfg, cfg.iterations)
    pooled = cfg.method == "kscu" and cfg.pool > 0
    if pooled:  # drawn up front by the unedited model: the window's end - 1 guided steps per trajectory
        pool = [rng.choice(pairs) for _ in range(cfg.pool)]
        up_front = 2 * max(max(r) for r in table) * cfg.pool * (2 if cfg.preserve else 1)
    for i, ks in enumerate(table):
        if pooled:
            rows = [pool[rng.randrange(cfg.pool)] for _ in ks]
        else:
            restart = [cfg.method == "esd" or steps[r] != k - 1 for r, k in enumerate(ks)]
            rows = [rng.choice(pairs) if new else pair for pair, new in zip(rows, restart)]
        if i >= augment_from:
            for row in rows:
                augment_prompt(row.prompt, cfg.concept, rng)
        cost = (up_front if i == 0 else 0) if pooled else sum(2 * k if new else 2 for k, new in zip(ks, restart))
        if cfg.preserve:  # the kept prompts' own trajectories, sampled and reused alike, one target, one prediction
            if not pooled:
                cost += sum(2 if cfg.method == "kscu" and kept[r] == k - 1 else 2 * k for r, k in enumerate(ks))
            cost += 2 * batch
            kept = ks
        sampling.append(cost)
        targets.append((2 if all(row.anchor == "" for row in rows) else 3) * batch)
        steps = ks
    return Cost(sampling, targets, (2 if cfg.lambda2 > 0 else 1) * batch)


def checked_forwards(result: UnlearnResult, domain: Domain) -> list[int]:
    """UNet images per iteration of a finished run; raises if the cost model disagrees with the
    trainer's own total."""
    per_iteration = cost_model(result.config, domain).per_iteration()
    if sum(per_iteration) != result.unet_forwards:
        raise RuntimeError(
            f"benchmarks/_common.py's cost model counts {sum(per_iteration)} UNet images, the trainer {result.unet_forwards}: "
            "update cost_model to the trainer's sampling rule"
        )
    return per_iteration


class Snapshots:
    """An on_progress callback that keeps a copy of the trainable tensors and the elapsed time at
    chosen iterations, so one training run yields a whole trade-off curve."""

    def __init__(self, iterations: list[int]) -> None:
        self.marks = sorted(set(iterations))
        self.params: dict[int, dict[str, torch.Tensor]] = {}
        self.elapsed: dict[int, float] = {}

    def __call__(self, progress: Progress) -> None:
        if progress.iteration in self.marks:
            self.params[progress.iteration] = {n: p.detach().float().cpu().clone() for n, p in progress.unet.named_parameters()
                                               if p.requires_grad}
            self.elapsed[progress.iteration] = progress.elapsed


def marks(iterations: int, fractions: list[float]) -> list[int]:
    """Iteration counts at the given fractions of a run (at least 1, at most `iterations`)."""
    return sorted({min(iterations, max(1, round(f * iterations))) for f in fractions})


# ---------------------------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------------------------


def score(model: LoadedModel, unet, concept: str, n_erase: int, n_retain: int, num_steps: int = 25, guidance: float = 3.0, seed: int = EVAL_SEED) -> dict:
    """kscu.evaluation.concept_metrics of one UNet on evaluate_edit's prompts and seeds.

    The same numbers as evaluate_edit's `before` (base UNet) or `after` (an edit) for the same
    arguments, but one UNet at a time: a benchmark scores the base once per concept instead of
    next to each of its many edits and snapshots.
    """
    plan = model.domain.evaluation_plan(concept, None, None, n_erase, n_retain, seed)
    images = Sampler(model, num_steps, guidance).generate(unet, plan.erase.prompts + plan.retain.prompts,
                                                          plan.erase.seeds + plan.retain.seeds, batch_size=32)
    read = read_images(model.domain.judge, plan, images)
    return concept_metrics(plan, {g: v[:n_erase] for g, v in read.items()}, {g: v[n_erase:] for g, v in read.items()})


def first_crossing(xs: list[float], ys: list[float], threshold: float) -> float | None:
    """The x where the piecewise-linear curve first reaches `threshold` (None if it never does)."""
    for j, y in enumerate(ys):
        if y >= threshold:
            if j == 0:
                return xs[0]
            frac = (threshold - ys[j - 1]) / (y - ys[j - 1])
            return xs[j - 1] + frac * (xs[j] - xs[j - 1])
    return None


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------


class Timer:
    """`with Timer() as t: ...` then t.seconds (wall clock, perf_counter)."""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def format_table(rows: list[dict], columns: list[str]) -> str:
    """Plain-text table; floats with 3 decimals below 10, else 1; None as '-'."""
    def cell(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def rounded(value, digits: int = 5):
    """The same structure with floats rounded to `digits` significant digits (learning rates
    like 1e-5 survive): small, diff-friendly result files."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    if isinstance(value, np.generic):
        return rounded(value.item(), digits)
    return value


def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def write_results(args: argparse.Namespace, name: str, payload: dict, summary: dict) -> Path:
    """Write {name}.json (name_smoke.json for smoke runs) with the settings it ran with, atomically,
    and print `summary` as the final JSON line, with the file's path in it."""
    path = args.out / f"{name}{'_smoke' if args.smoke else ''}.json"
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "out"}
    payload = {"benchmark": name, "smoke": args.smoke, "threads": torch.get_num_threads(), "settings": settings, **payload}
    _atomic(path, lambda tmp: tmp.write_text(json.dumps(rounded(payload), indent=1) + "\n"))
    print(json.dumps(rounded({**summary, "results": str(path)})))
    return path


def figure(rows: int = 1, cols: int = 1, width: float = 4.0, height: float = 3.0) -> tuple[Figure, np.ndarray]:
    """A Figure on an Agg canvas (no pyplot state, no display) and its axes as a 2-D array."""
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def goal_axis(ax, ua_goal: float, max_drop: float, **labels: str) -> None:
    """An axis of UA (x) against a retention change in points (y): the goal's two lines, a grid,
    the legend and the labels (xlabel, ylabel, title)."""
    ax.axhline(-max_drop * 100, color="grey", ls=":", lw=1)
    ax.axvline(ua_goal, color="grey", ls=":", lw=1)
    ax.set(**labels)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def save_figure(fig: Figure, args: argparse.Namespace, name: str) -> Path:
    """Save as {name}.png (name_smoke.png for smoke runs), atomically, at a size fit to commit."""
    path = args.out / f"{name}{'_smoke' if args.smoke else ''}.png"
    return _atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))


APP_START_SECONDS = 3600
"""Starting the app imports torch, diffusers and gradio and loads the model: slow on a busy CPU
(a hang guard, not a speed goal)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def app_process(model_dir: Path, log_path: Path, *extra: str, env: dict[str, str] | None = None):
    """`python app.py --port P --model DIR ...` in a subprocess, offline; yields (url, process) once
    it answers, stops it afterwards. RuntimeError with the log's tail if it exits or never answers."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1", **(env or {})}
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--model", str(model_dir), *extra],
                                   cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + APP_START_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"app.py exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"app.py did not answer within {APP_START_SECONDS} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def running_workbench(model_dir: Path, log_path: Path, *extra: str):
    """app_process for tests, which need only its URL."""
    with app_process(model_dir, log_path, *extra) as (url, _process):
        yield url

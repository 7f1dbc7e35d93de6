"""One trainer for KSCU and ESD (arXiv 2507.06526; symbols named as in the paper).

Per iteration i: k = table[i]; x_k from the model being tuned (trajectory reuse: advance the
previous trajectory one DDIM step when table[i] = table[i-1] + 1); frozen targets
    target_c = e_a - eta * (e_c - e_a)              (negative guidance; e_a = e_0 unless an anchor)
    target_0 = e_0 - lambda1(t) * (e_c - e_0),      lambda1(t) = (1000 - t) * 2e-5
and loss  L = MSE(eps*(x_k, t, c~), target_c) + lambda2 * MSE(eps*(x_k, t, ""), target_0).
ESD is the same loop with a uniform table, no trajectory reuse and lambda2 = 0.
config.trajectories (not in the paper) trains several rows at once, each its own trajectory with
its own phrasing and noise (kscu.trajectories), the loss their mean.
Optional (config.preserve, not in the paper): + w * MSE(eps*(y_k, t, p), eps(y_k, t, p)) for a
prompt p to keep, y_k on its own trajectory sampled like x_k (reused the same way).
Optional (config.adversarial, not in the paper): + MSE(eps*(x_k, t, c_adv), target_c), c_adv the
prompt with prefix tokens that kscu.adversarial keeps attacking the model being tuned with.
Several concepts (config.also, not in the paper's single-concept loop): one ConceptObjective per
concept, each with its own preset's window, phrasings, pool and random streams, over one tuned UNet
and one Adam; config.schedule orders their iterations (in turn, as the authors' multi-concept code
walks each window, or interleaved).
The base UNet is never touched: a copy is tuned and only its changed tensors are returned.
"""
from __future__ import annotations

import copy
import random
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from kscu.adversarial import Adversary
from kscu.concepts import augment_prompt
from kscu.config import UnlearnConfig
from kscu.divergence import DivergenceGuard
from kscu.domain import ConceptPair
from kscu.influence import decided_start
from kscu.keysteps import key_step_table, uniform_table
from kscu.models import LoadedModel
from kscu.progress import Cancelled, ProgressFn, phase, quiet
from kscu.sampling import Sampler, encode_prompts
from kscu.sanity import SanityReport, sanity_check
from kscu.trajectories import TrajectoryPool, Trajectories
from kscu.validation import CheckedConfig, ConfigWarning, check_config

AUGMENT_SHARE = 0.05
"""Prompt augmentation runs during this last share of iterations."""
AUGMENT_NOISE = 1e-5
"""Std of the Gaussian noise added to the augmented prompt's embedding."""


class UnlearnCancelled(Cancelled):
    """Raised when the caller asked to stop; the base model is untouched."""


@dataclass
class Progress:
    """What the trainer reports after each iteration (a kscu.progress.Update with the loss for
    loss curves and the UNet being tuned for previews; read `unet`, never train it)."""

    iteration: int
    iterations: int
    step_index: int
    loss: float
    elapsed: float
    """Seconds since the first iteration began (a robust analysis or a pool's draw before it is not
    counted: it would make every iteration look slower and the ETA too long)."""
    unet: torch.nn.Module | None = field(default=None, repr=False, compare=False)
    concept: str = ""
    """The concept this iteration trained, in a job that erases several (else empty)."""

    @property
    def fraction(self) -> float:
        return self.iteration / self.iterations

    @property
    def message(self) -> str:
        on = f" ({self.concept})" if self.concept else ""
        return f"iteration {self.iteration} of {self.iterations}{on}, loss {self.loss:.4g}"

    @property
    def eta(self) -> float | None:
        return self.elapsed / self.iteration * (self.iterations - self.iteration) if self.iteration else None


@dataclass
class UnlearnResult:
    """The changed UNet tensors plus everything needed to describe and repeat the run."""

    config: UnlearnConfig
    params: dict[str, torch.Tensor]
    base_source: str
    base_hash: str
    family: str
    losses: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    seconds: float = 0.0
    unet_forwards: int = 0
    unet_backwards: int = 0
    warnings: list[str] = field(default_factory=list)
    """What the settings check found worth saying but not worth refusing (e.g. a cut-off concept)."""
    sanity: SanityReport | None = None
    """The check after training (kscu.sanity): did the model survive on prompts without the concept?"""
    others: list[UnlearnConfig] = field(default_factory=list)
    """The further concepts' resolved configs (config.also, in order), each with its own preset."""
    trained_concepts: list[int] = field(default_factory=list)
    """With several concepts: per iteration, which one it trained (an index into `configs`)."""

    @property
    def configs(self) -> list[UnlearnConfig]:
        """Every erased concept's config, the first one first."""
        return [self.config, *self.others]

    def apply(self, model: LoadedModel):
        """A copy of the base UNet with this edit applied (the base stays as it was)."""
        unet = copy.deepcopy(model.unet)
        missing = set(self.params) - set(dict(unet.named_parameters()))
        if missing:
            raise ValueError(f"the edit does not fit this model: {len(missing)} tensors missing, e.g. {sorted(missing)[0]}")
        unet.load_state_dict({k: v.to(model.dtype) for k, v in self.params.items()}, strict=False)
        return unet.to(model.device)


def trainable_names(unet, subset: str) -> list[str]:
    """xattn: cross-attention (attn2) only (ESD-x); noxattn: all but attn2 and the time
    embedding (ESD-u); full: everything."""
    names = [n for n, _ in unet.named_parameters()]
    if subset == "xattn":
        return [n for n in names if ".attn2." in n]
    if subset == "noxattn":
        return [n for n in names if ".attn2." not in n and not n.startswith("time_embedding")]
    return names


def lambda1(t: torch.Tensor) -> torch.Tensor:
    """(1000 - t) * 2e-5, shaped to scale a batch of latents when t holds one timestep per row."""
    weight = (1000 - t.float()) * 2e-5
    return weight.reshape(-1, 1, 1, 1) if weight.dim() == 1 else weight


def targets(e_c: torch.Tensor, e_0: torch.Tensor, e_a: torch.Tensor, t: torch.Tensor, eta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen-model targets: target_c = e_a - eta (e_c - e_a); target_0 = e_0 - lambda1(t) (e_c - e_0)."""
    return e_a - eta * (e_c - e_a), e_0 - lambda1(t) * (e_c - e_0)


def kscu_loss(pred_c: torch.Tensor, pred_0: torch.Tensor | None, target_c: torch.Tensor, target_0: torch.Tensor, lambda2: float) -> torch.Tensor:
    """MSE(pred_c, target_c) + lambda2 MSE(pred_0, target_0); ESD passes pred_0=None, lambda2=0."""
    loss = F.mse_loss(pred_c, target_c)
    return loss + lambda2 * F.mse_loss(pred_0, target_0) if pred_0 is not None else loss


def preservation_loss(model: LoadedModel, tuned, y: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """MSE between the tuned and the frozen prediction for prompts to keep at y (their own
    trajectories' latents, at per-row timesteps t)."""
    with torch.no_grad(), model.autocast():
        target = model.unet(y.to(model.dtype), t, encoder_hidden_states=cond.to(model.dtype)).sample.float()
    with model.autocast():
        pred = tuned(y, t, encoder_hidden_states=cond).sample.float()
    return F.mse_loss(pred, target)


def pooled(cfg: UnlearnConfig) -> bool:
    """Whether the run draws a trajectory pool with the unedited model before its first iteration."""
    return cfg.method == "kscu" and bool(cfg.pool)


def sources(cfg: UnlearnConfig, sampler: Sampler, frozen, table: list[list[int]], rng: random.Random, keep_rng: random.Random,
            pairs: list[ConceptPair], keep: list[str], prompts_of: Callable, texts_of: Callable,
            check: Callable[[], None] | None = None, on_draw: ProgressFn = quiet) -> tuple:
    """Where x_k (erased phrasings) and y_k (prompts to keep) come from: KSCU with a pool draws
    cfg.pool trajectories of each with the unedited model first (kscu.trajectories.TrajectoryPool;
    `check` raises to cancel the draw, on_draw hears it from 0 to 1); otherwise trajectories of the
    model being tuned, reused (KSCU) or fresh every iteration (ESD)."""
    seed_base = cfg.seed * 100_003
    if pooled(cfg):
        first, last = min(min(r) for r in table), max(max(r) for r in table) + 1
        half = 0.5 if keep else 1.0
        erased = TrajectoryPool(sampler, frozen, cfg.pool, lambda: rng.choice(pairs), prompts_of, seed_base, first, last, rng, check=check,
                                on_progress=phase(on_draw, 0.0, half, "Drawing the phrasings to erase"))
        kept = TrajectoryPool(sampler, frozen, cfg.pool, lambda: keep_rng.choice(keep), texts_of, seed_base + 50_021, first, last,
                              keep_rng, check=check, on_progress=phase(on_draw, half, 1.0, "Drawing the prompts to keep")) if keep else None
        return erased, kept
    fresh = cfg.method == "esd"
    return (Trajectories(sampler, cfg.trajectories, seed_base, fresh),
            Trajectories(sampler, cfg.trajectories, seed_base + 50_021, fresh))  # the kept prompts', like the erased ones


def row_steps(cfg: UnlearnConfig, iterations: int) -> list[list[int]]:
    """Per iteration, the step index of each trajectory row. KSCU: every row at the key-step
    table's step (the rows walk the window together); ESD: independent uniform draws. One row gives
    the plain tables."""
    rows = cfg.trajectories
    if cfg.method == "esd":
        flat = uniform_table(iterations * rows, cfg.num_steps, cfg.seed)
        return [flat[i * rows : (i + 1) * rows] for i in range(iterations)]
    return [[k] * rows for k in key_step_table(iterations, cfg.start_step, cfg.num_steps, cfg.end_step)]


STREAM_STRIDE = 1_000_003
"""Offset between the choice streams of the concepts of one job (concept n: seed + n * this), so
two concepts never draw their phrasings and pool entries in step; the first concept's streams are
a single-concept run's. (The trajectories' noise seeds come from config.seed alone: two concepts
start from the same noise, under different prompts.)"""


def schedule_order(lengths: Sequence[int], schedule: str) -> list[tuple[int, int]]:
    """(concept, its iteration) for every iteration of a job. in_turn: concept 0's iterations, then
    concept 1's, ...; interleaved: merged so each concept's share of the iterations done so far
    stays even (equal lengths alternate 0, 1, 0, 1, ...). One concept: its iterations in order."""
    if schedule == "in_turn":
        return [(n, j) for n, length in enumerate(lengths) for j in range(length)]
    if schedule == "interleaved":
        return sorted(((n, j) for n, length in enumerate(lengths) for j in range(length)),
                      key=lambda item: ((item[1] + 0.5) / lengths[item[0]], item[0]))
    raise ValueError(f"unknown schedule {schedule!r}")


class ConceptObjective:
    """One erased concept's share of a job: its phrasings, prompts to keep, key-step table, where
    its x_k come from (kscu.trajectories), its adversary, and its loss at one of its iterations.
    A job with several concepts holds one per concept over one tuned UNet and one optimizer."""

    def __init__(self, model: LoadedModel, cfg: UnlearnConfig, sampler: Sampler, frozen, embed: Callable[[str], torch.Tensor],
                 index: int = 0, check: Callable[[], None] | None = None, avoid: Sequence[str] = (),
                 on_draw: ProgressFn = quiet) -> None:
        """avoid: the job's other erased concepts; no phrasing or kept prompt of this one names them.
        check and on_draw: cancel and hear the trajectory pool's draw, when the config has one."""
        stream = cfg.seed + STREAM_STRIDE * index
        self.model, self.cfg, self.sampler, self.frozen, self.embed = model, cfg, sampler, frozen, embed
        self.rng = random.Random(stream)
        self.table = row_steps(cfg, cfg.iterations)
        self.pairs = model.domain.training_pairs(cfg.concept, cfg.kind, cfg.anchor, seed=cfg.seed, avoid=avoid)
        self.keep = model.domain.preserve_prompts(cfg.preserve, cfg.kind, seed=cfg.seed, avoid=avoid)
        self.keep_rng = random.Random(stream + 1)  # its own stream: without preserve, runs stay as they were
        self.augment_from = int(cfg.iterations * (1 - AUGMENT_SHARE)) if cfg.augment else cfg.iterations
        self.erased, self.kept = sources(cfg, sampler, frozen, self.table, self.rng, self.keep_rng, self.pairs, self.keep,
                                         self.prompts_of, self.texts_of, check, on_draw)
        self.up_front = (self.erased.forwards + (self.kept.forwards if self.keep else 0)
                         if isinstance(self.erased, TrajectoryPool) else 0)  # a pool is drawn here, before any iteration
        self.empty = embed("").expand(cfg.trajectories, -1, -1)
        self.adversary = Adversary(model, cfg.concept, cfg.seed) if cfg.adversarial else None

    def prompts_of(self, rows: Sequence[ConceptPair]) -> torch.Tensor:
        return torch.cat([self.embed(pair.prompt) for pair in rows])

    def texts_of(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.cat([self.embed(text) for text in texts])

    def loss(self, j: int, tuned) -> tuple[torch.Tensor, int]:
        """The loss at this concept's iteration j (module docstring) and the UNet images it used."""
        cfg, model, frozen, batch, empty = self.cfg, self.model, self.frozen, self.cfg.trajectories, self.empty
        ks = self.table[j]
        t = self.sampler.timesteps[ks]
        rows, c, x, used = self.erased.sample(tuned, ks, lambda: self.rng.choice(self.pairs), self.prompts_of)
        plain = all(pair.anchor == "" for pair in rows)
        with torch.no_grad(), model.autocast():
            conds = [c, empty] if plain else [c, empty, torch.cat([self.embed(pair.anchor) for pair in rows])]
            eps = frozen(torch.cat([x] * len(conds)).to(model.dtype), t.repeat(len(conds)),
                         encoder_hidden_states=torch.cat(conds).to(model.dtype)).sample.float()
            used += len(eps)
            e_c, e_0 = eps[:batch], eps[batch : 2 * batch]
            target_c, target_0 = targets(e_c, e_0, e_0 if plain else eps[2 * batch :], t, cfg.eta)
        c_tilde = c
        if j >= self.augment_from:
            c_tilde = (torch.cat([self.embed(augment_prompt(pair.prompt, cfg.concept, self.rng)) for pair in rows])
                       + AUGMENT_NOISE * torch.randn_like(c))
        with model.autocast():
            if cfg.lambda2 > 0:
                pred = tuned(torch.cat([x, x]), t.repeat(2), encoder_hidden_states=torch.cat([c_tilde, empty])).sample.float()
                loss = kscu_loss(pred[:batch], pred[batch:], target_c, target_0, cfg.lambda2)
            else:
                pred = tuned(x, t, encoder_hidden_states=c_tilde).sample.float()
                loss = kscu_loss(pred, None, target_c, target_0, 0.0)
            used += len(pred)
        if self.adversary is not None:
            prompts = [pair.prompt for pair in rows]
            used += self.adversary.update(j, tuned, x, t, prompts, e_c) + batch
            loss = loss + self.adversary.erase_loss(tuned, x, t, prompts, target_c)
        if self.keep:
            _, keep_cond, y, kept_used = self.kept.sample(tuned, ks, lambda: self.keep_rng.choice(self.keep), self.texts_of)
            loss = loss + cfg.preserve_weight * preservation_loss(model, tuned, y, t, keep_cond)
            used += kept_used + 2 * batch
        return loss, used


SETUP_SHARE = 0.5
"""About the share of a run's time spent before its first iteration, when it has such work (a robust
run's analysis, a trajectory pool's draw), so that a bar showing the run as one moves all along.
Measured on the demo model, 2 cores, 2026-12-08 (throwaway timing of `unlearn`): the style preset
on striped 36 of 66 s before the first iteration (its pool of 64 trajectories), robust 64 of 111 s
(26 s of analysis), robust red 64 of 125 s; the object preset draws no pool and starts at once."""
ANALYSIS_SHARE = 0.4
"""The robust analysis' share of the set-up when a trajectory pool follows it (26 of 64 s above)."""


def setup_share(checked: CheckedConfig) -> float:
    """SETUP_SHARE for a run with work before its first iteration, else 0."""
    return SETUP_SHARE if any(checked.decide_start) or any(pooled(part) for part in checked.parts) else 0.0


def open_where_decided(model: LoadedModel, checked: CheckedConfig, should_stop: Callable[[], bool] | None = None,
                       on_progress: ProgressFn | None = None) -> CheckedConfig:
    """config.robust: every part flagged in checked.decide_start gets its window start from where its
    concept is decided on this model (kscu.influence.decided_start: the causal influence curve, or
    the gap curve without a judge), and with checked.keep_passes as many iterations as keep the
    preset's passes over the new window; the others stay as they are. on_progress hears the analyses
    (one share of [0, 1] per concept measured). Raises AnalysisCancelled (a Cancelled) when
    should_stop() turns true during the analysis; nothing was changed then."""
    flagged = [n for n, decide in enumerate(checked.decide_start) if decide]
    if not flagged:
        return checked
    parts = list(checked.parts)
    for done, n in enumerate(flagged):
        part = parts[n]
        report = None if on_progress is None else phase(on_progress, done / len(flagged), (done + 1) / len(flagged),
                                                        f"Measuring where {part.concept!r} is decided")
        start = decided_start(model, part.concept, part.kind, part.num_steps, should_stop, report)[0]
        parts[n] = _opened(part, start, checked.keep_passes)
    return replace(checked, config=parts[0], others=tuple(parts[1:]), decide_start=(), keep_passes=False)


def _opened(part: UnlearnConfig, start: int, keep_passes: bool) -> UnlearnConfig:
    """`part` with its window opened at `start`; keep_passes: its iterations scaled with the window's
    width. Why: the key-step table walks the window in passes, and the same iterations over a wider
    window train each step less (the style preset's 200 over [14, 50) of 50 left stripes on 3 in 48
    rephrased prompts on one seed of three; 277, its 7.7 passes, on 0 or 1 of 48 per seed)."""
    iterations = round(part.iterations * (part.end_step - start) / (part.end_step - part.start_step)) if keep_passes else part.iterations
    return replace(part, start_step=start, iterations=iterations)


def unlearn(
    model: LoadedModel,
    config: UnlearnConfig | CheckedConfig,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_setup: ProgressFn | None = None,
) -> UnlearnResult:
    """Run KSCU (or ESD) and return the edit. Deterministic given config.seed.

    A request (UnlearnConfig) is checked and resolved first (kscu.validation: ConfigError names the
    wrong setting); a CheckedConfig is used as it is. A run that diverges stops with
    UnlearnDiverged (kscu.divergence); a finished one carries a sanity check. Several concepts
    (config.also) train one UNet, each with its own preset's window, in config.schedule's order.
    config.robust first measures where each concept is decided and opens its window there
    (open_where_decided); the result's config and seconds include that. on_setup hears, from 0 to 1,
    the work before the first iteration (that analysis, then any trajectory pool's draw: together
    about half a run's time on the demo model, SETUP_SHARE); on_progress hears the iterations.
    """
    checked = config if isinstance(config, CheckedConfig) else check_config(config, model)
    start = time.time()
    setup = on_setup or quiet
    pools = [n for n, part in enumerate(checked.parts) if pooled(part)]
    analysis_end = 0.0 if not any(checked.decide_start) else ANALYSIS_SHARE if pools else 1.0
    checked = open_where_decided(model, checked, should_stop, phase(setup, 0.0, analysis_end))
    cfg = checked.config
    for warning in checked.warnings:
        warnings.warn(warning, ConfigWarning, stacklevel=2)
    torch.manual_seed(cfg.seed)
    sampler = Sampler(model, cfg.num_steps, cfg.guidance)
    embeddings: dict[str, torch.Tensor] = {}

    def embed(text: str) -> torch.Tensor:
        if text not in embeddings:
            embeddings[text] = encode_prompts(model, [text]).float()
        return embeddings[text]

    frozen = model.unet
    tuned = copy.deepcopy(frozen).float()
    names = set().union(*(trainable_names(tuned, part.params) for part in checked.parts))
    trained = {}
    for name, p in tuned.named_parameters():
        p.requires_grad_(name in names)
        if name in names:
            trained[name] = p
    optimizer = torch.optim.Adam(trained.values(), lr=cfg.lr)
    guard = DivergenceGuard({name: p for name, p in frozen.named_parameters() if name in names}, max(p.lr for p in checked.parts))
    # fp16 gradients of an MSE over a whole latent are tiny per element and underflow without
    # loss scaling (measured on a GPU: 2 % of them exactly zero, the edit 28 % off the float32
    # one; with scaling 3 %: scripts/cuda_precision.py). bf16 has float32's range and needs none.
    # A step whose scaled gradients overflow is skipped and the scale lowered, as GradScaler does.
    scaler = torch.amp.GradScaler("cuda", enabled=model.half_on_cuda and model.dtype == torch.float16)
    result = UnlearnResult(cfg, {}, model.source, model.model_hash, model.family, warnings=list(checked.warnings),
                           others=list(checked.others))

    def check_pool() -> None:
        if should_stop is not None and should_stop():
            raise UnlearnCancelled("cancelled while drawing the trajectory pool, before training; the base model is unchanged")

    concepts = [part.concept for part in checked.parts]
    each = (1 - analysis_end) / max(len(pools), 1)  # the rest of the set-up, one share per pool-drawing concept
    draws = {n: phase(setup, analysis_end + i * each, analysis_end + (i + 1) * each, f"{checked.parts[n].concept!r}" if len(pools) > 1 else "")
             for i, n in enumerate(pools)}
    objectives = [ConceptObjective(model, part, sampler, frozen, embed, n, check_pool, [c for c in concepts if c != part.concept],
                                   draws.get(n, quiet))
                  for n, part in enumerate(checked.parts)]
    result.unet_forwards += sum(o.up_front for o in objectives)
    order = schedule_order([len(o.table) for o in objectives], cfg.schedule)
    several = len(objectives) > 1
    iterating = time.time()  # the ETA counts iterations: the set-up above is not in their pace

    for i, (n, j) in enumerate(order):
        if should_stop is not None and should_stop():
            raise UnlearnCancelled(f"cancelled after {i} of {len(order)} iterations; the base model is unchanged")
        if cfg.schedule == "in_turn" and i > 0 and n != order[i - 1][0]:
            # Each window in turn starts a fresh Adam, as a separate job would (the targets stay the
            # unedited model's): Adam's second moments remember about a thousand iterations of the
            # previous concept's gradients, so a later concept with smaller ones took far smaller
            # steps (in {star, dotted, dark} in turn, dark kept UA 0.00 with one Adam, 0.99 with
            # its own). Interleaved jobs keep one Adam: one per concept there erased striped + red
            # on fewer seeds (docs/results.md, "Several concepts in one job").
            optimizer.state.clear()
        objective = objectives[n]
        for group in optimizer.param_groups:
            group["lr"] = objective.cfg.lr
        loss, used = objective.loss(j, tuned)
        result.unet_forwards += used
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        result.unet_backwards += 1
        loss_value = loss.item()
        guard.check(i + 1, loss_value, trained, last=i + 1 == len(order))
        step = objective.table[j][0]
        result.losses.append(loss_value)
        result.steps.append(step)
        if several:
            result.trained_concepts.append(n)
        if on_progress is not None:
            on_progress(Progress(i + 1, len(order), step, loss_value, time.time() - iterating, tuned,
                                 objective.cfg.concept if several else ""))

    result.seconds = time.time() - start
    result.sanity = sanity_check(model, tuned, cfg.concept, cfg.guidance, cfg.seed, also=cfg.also)
    result.params = {n: p.detach().float().cpu().clone() for n, p in trained.items()}
    return result

"""Concept influence curves: at which denoising steps does a concept take shape?

KSCU fine-tunes only a late window [S, K) of the schedule and takes S from a table per concept
kind. These curves measure, for one concept on one model, where along the schedule the concept
is decided, and suggest S from the measurement instead of the table. Two measures:

- "gap" (measure a): along trajectories sampled with the concept prompt, the relative gap
  ||eps(x_k, concept) - eps(x_k, anchor)|| / ||eps(x_k, anchor)|| of the base UNet at each step
  index k: how much the concept words change the prediction there. Cheap, needs no judge.
- "causal" (measure b): images sampled with the concept prompt at some steps and the anchor at
  the others, scored by a detector. Two curves over switch points k:
  "causal_from" (anchor for steps < k, concept from k on) and "causal_until" (concept for
  steps < k, anchor from k on). Slower, but it measures the outcome that unlearning cares about.

Step index k runs 0..K-1 over the DDIM schedule, 0 = pure noise, as everywhere in kscu.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from kscu.domain import ConceptPair, Detector
from kscu.keysteps import scale_start
from kscu.models import LoadedModel
from kscu.sampling import Sampler, encode_prompts
from kscu.progress import Cancelled, ProgressFn, Step


MEASURES = ("gap", "causal")
DEFAULT_THRESHOLD = 0.5
"""Share of the concept already decided before S (see suggest_start)."""
MIN_CAUSAL_EFFECT = 0.2
"""Below this detection difference between full concept and anchor only, the causal curves
carry no signal (the model does not draw the concept, or the detector cannot see it)."""


class AnalysisCancelled(Cancelled):
    """should_stop() returned True; nothing was changed."""


@dataclass
class InfluenceCurve:
    """One measure over step indices. For the causal curves step_index is the switch point
    (0..K); its timestep is the noise level of the state where the switch happens (0 for
    k = K, the clean image after the last step). spread: std over seeds (ddof 0).

    weight (gap curve only): |sigma_{k+1} - sigma_k| with sigma = sqrt((1 - alpha_bar) / alpha_bar).
    In the rescaled latent x / sqrt(alpha_bar) a DDIM step is exactly x_{k+1} = x_k +
    (sigma_{k+1} - sigma_k) * eps, so this is how far step k moves the latent per unit of eps
    difference: an eps gap at a noisy step moves the sample ~10x more than the same gap at a
    clean one. The gap itself grows towards the clean end partly because eps-prediction
    magnifies small image differences there; the weight undoes that for the fallback rule.
    """

    concept: str
    measure: str  # "gap" | "causal_from" | "causal_until"
    step_index: list[int]
    timestep: list[int]
    value: list[float]
    spread: list[float]
    weight: list[float] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class StartSuggestion:
    """S on the schedule used and on the paper's 50-step scale, with the preset to compare."""

    start: int
    start_of_50: int
    paper_start: int
    paper_start_of_50: int
    rule: str


@dataclass
class InfluenceReport:
    """Everything analyze() measured, JSON-ready through to_dict()."""

    concept: str
    kind: str
    family: str
    num_steps: int
    curves: list[InfluenceCurve]
    suggested_start: int
    suggested_start_of_50: int
    paper_start: int
    paper_start_of_50: int
    rule: str
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def curve(self, measure: str) -> InfluenceCurve | None:
        return next((c for c in self.curves if c.measure == measure), None)

    def to_dict(self) -> dict:
        return asdict(self)  # recurses into the curves


def _seed_list(seeds: int | Sequence[int], name: str) -> list[int]:
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"{name} must be at least 1 (or a list of seeds)")
        return list(range(seeds))
    out = [int(s) for s in seeds]
    if not out:
        raise ValueError(f"{name} is empty: give a count or a non-empty list of seeds")
    return out


def switch_grid(num_steps: int, points: int = 11) -> list[int]:
    """About `points` switch points spread evenly over 0..K, both ends included (k = 0 and
    k = K are the all-concept and all-anchor runs every normalisation needs)."""
    return sorted({round(x) for x in np.linspace(0, num_steps, max(points, 2))})


def _crossing(steps: Sequence[float], share: Sequence[float], threshold: float) -> float | None:
    """First k where the piecewise-linear `share` rises above threshold (None if it never does)."""
    for j in range(1, len(steps)):
        if share[j] > threshold >= share[j - 1]:
            frac = (threshold - share[j - 1]) / (share[j] - share[j - 1])
            return steps[j - 1] + frac * (steps[j] - steps[j - 1])
    return None


def suggest_start(
    curves: Sequence[InfluenceCurve], num_steps: int, paper_start_of_50: int = 24, threshold: float = DEFAULT_THRESHOLD
) -> StartSuggestion:
    """Suggest the key-step window start S from the curves.

    Rule (primary, curve "causal_until"): after a KSCU edit on [S, K) the model follows the
    concept prompt at steps < S and (ideally) the anchor from S on: exactly the run "concept
    only up to step S". So the curve's normalised effect
        decided(k) = (u(k) - u(0)) / (u(K) - u(0))      (u(0): anchor only, u(K): full concept)
    is the share of the concept that the steps before k have already decided and that a
    window starting at k could no longer take back. S = floor of the first (linearly
    interpolated) k where decided(k) exceeds `threshold`. With 0.5, S is the step by which the
    concept is half decided; the window keeps leverage on the larger rest, and the trainer's
    negative guidance pushes further than the anchor. In an additive world this is also the
    latest k at which "concept only from k on" still gives half the effect; the demo world is
    not additive everywhere (for "star" that curve crosses at 17, this one at 8), and this is
    the curve that simulates the edit. A smaller threshold gives an earlier, safer but less
    selective window.

    Fallback (curve "gap", when the causal curves are missing or flat, i.e. u(K) - u(0) <
    MIN_CAUSAL_EFFECT): the same rule on the cumulative weighted gap, decided(k) =
    sum_{j<k} w_j gap_j / sum_j w_j gap_j, the share of the concept's push on the latent
    already applied before k (w: the curve's weight, 1 where it has none). It is a proxy: it
    counts how far each step moves the sample, not how much of that later steps undo, so it
    leans early. On the demo model (K = 25; striped, star, red) the causal rule with 24 seeds
    gave S = 12, 8, 2, this weighted gap rule 7, 6, 4, the unweighted gap 17, 14, 16.

    S is clamped to 0 <= S < 0.9 K, as the Key Step Table requires. paper_start_of_50: the
    preset's start for the concept's kind (Domain.preset(kind).start_of_50; the style preset's 24
    by default), reported next to S scaled to K.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold {threshold} must lie strictly between 0 and 1")
    by_measure = {c.measure: c for c in curves}
    limit = int(0.9 * num_steps - 1e-9)
    crossing, rule = None, ""
    until = by_measure.get("causal_until")
    if until is not None:
        base, full = until.value[0], until.value[-1]
        if full - base >= MIN_CAUSAL_EFFECT:
            decided = [(v - base) / (full - base) for v in until.value]
            crossing = _crossing(until.step_index, decided, threshold)
            rule = (
                f"causal: detection {base:.2f} with the anchor only, {full:.2f} with the full concept; "
                f"the steps before k decide more than {threshold:.0%} of that effect from k = {crossing:.1f} on"
            )
        else:
            rule = f"causal curves flat (detection {base:.2f} anchor only vs {full:.2f} full concept), so: "
    if crossing is None:
        gap = by_measure.get("gap")
        if gap is None:
            raise ValueError("no usable curve: the causal curves are missing or flat and there is no gap curve; measure 'gap' too")
        weighted = np.asarray(gap.value) * (np.asarray(gap.weight) if gap.weight is not None else 1.0)
        cumulative = np.concatenate([[0.0], np.cumsum(weighted)])
        decided = cumulative / cumulative[-1] if cumulative[-1] > 0 else cumulative
        crossing = _crossing(list(range(len(decided))), list(decided), threshold)
        rule += (
            f"gap: the steps before k carry more than {threshold:.0%} of the cumulative "
            f"{'sigma-weighted ' if gap.weight is not None else ''}gap from k = {crossing:.1f} on"
            if crossing is not None
            else "gap: no crossing found"
        )
    # round first: a share that equals the threshold up to float error must not lose a step
    measured = math.floor(round(crossing, 6)) if crossing is not None else limit
    start = min(max(measured, 0), limit)
    rule += f"; S = {start} of {num_steps}" + (f" (clamped below 0.9 K = {0.9 * num_steps:g})" if start < measured else "")
    paper_50 = paper_start_of_50
    return StartSuggestion(start, round(start * 50 / num_steps), scale_start(paper_50, num_steps), paper_50, rule)


def _embed(model: LoadedModel, pairs: list[ConceptPair], count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(concept, anchor) embeddings for `count` images, cycling through the pairs."""
    chosen = [pairs[i % len(pairs)] for i in range(count)]
    return encode_prompts(model, [p.prompt for p in chosen]), encode_prompts(model, [p.anchor for p in chosen])


def analyze(
    model: LoadedModel,
    concept: str,
    kind: str | None = None,
    measures: Sequence[str] = MEASURES,
    num_steps: int = 25,
    seeds: int | Sequence[int] = 4,
    anchor: str | None = None,
    detector: Detector | None = None,
    on_progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    *,
    causal_seeds: int | Sequence[int] = 24,
    switch_points: int = 11,
    guidance: float = 3.0,
    threshold: float = DEFAULT_THRESHOLD,
) -> InfluenceReport:
    """Measure the influence curves of `concept` on the base UNet and suggest a window start.

    Prompts come from the domain's training_pairs, the same phrasing the trainer erases: on the
    demo model, sentences with the concept word and, as anchor, the same sentence without it
    (or with `anchor` substituted), so the curves isolate the concept word; on sd1 the kind's
    templates, each against the same sentence without the concept. Seed i uses pair i. `seeds` drive the gap measure,
    `causal_seeds` the causal one (each is a count or an explicit list; same seeds, same values).
    Why 24 causal seeds: each image either shows the concept or not, so a rate from n seeds has
    a standard error up to 0.5 / sqrt(n); on the demo model, where the concept moves detection
    by only ~0.3-0.4, 8 seeds put striped's S at 3 and 24 seeds at 12 (of 25).
    kind None: the domain's kind of the concept. The causal measure needs a detector: the model's
    judge (Domain.detector) is used when none is given; without one it is skipped and a note says so. Raises AnalysisCancelled when
    should_stop() returns True (checked between sampler runs).
    """
    unknown = set(measures) - set(MEASURES)
    if unknown or not measures:
        raise ValueError(f"measures must be a non-empty subset of {MEASURES}, got {tuple(measures)}")
    if num_steps < 2:
        raise ValueError("num_steps must be at least 2")
    domain = model.domain
    kind = domain.resolve_kind(concept, kind)
    preset = domain.preset(kind)  # unknown kind: fail before any sampling
    gap_seeds, b_seeds = _seed_list(seeds, "seeds"), _seed_list(causal_seeds, "causal_seeds")
    notes: list[str] = []
    if "causal" in measures and detector is None:
        detector = domain.detector(concept, kind)
        if detector is None:
            notes.append(
                "causal measure skipped: no judge for this concept on this model (load it with a judge, or "
                "pass detector=, a function from uint8 images to concept scores in [0, 1])"
            )
            measures = tuple(m for m in measures if m != "causal")
            if not measures:
                raise ValueError("the causal measure needs a detector here; pass detector= or also measure 'gap'")
    pairs = domain.training_pairs(concept, kind, anchor, count=max(len(gap_seeds), len(b_seeds)))
    sampler = Sampler(model, num_steps, guidance)
    grid = switch_grid(num_steps, switch_points)
    work = {"gap": num_steps, "causal": 2 * (num_steps + sum(num_steps - k for k in grid if k > 0))}  # UNet steps
    total = sum(work[m] for m in measures)
    done = 0

    def advance(steps: int, message: str) -> None:
        nonlocal done
        if should_stop is not None and should_stop():
            raise AnalysisCancelled(f"influence analysis of {concept!r} cancelled; nothing was changed")
        done += steps
        if on_progress is not None:
            on_progress(Step(min(done / total, 1.0), message))

    curves: list[InfluenceCurve] = []
    seconds: dict[str, float] = {}
    with torch.no_grad():
        if "gap" in measures:
            begin = time.time()
            curves.append(_gap_curve(model, sampler, concept, pairs, gap_seeds, advance))
            seconds["gap"] = time.time() - begin
        if "causal" in measures:
            begin = time.time()
            curves += _causal_curves(model, sampler, concept, pairs, b_seeds, grid, detector, advance)
            seconds["causal"] = time.time() - begin
    suggestion = suggest_start(curves, num_steps, preset.start_of_50, threshold)
    return InfluenceReport(
        concept, kind, domain.family, num_steps, curves, suggestion.start, suggestion.start_of_50,
        suggestion.paper_start, suggestion.paper_start_of_50, suggestion.rule, seconds, notes,
    )


def _gap_curve(model, sampler: Sampler, concept: str, pairs, seeds: list[int], advance) -> InfluenceCurve:
    """Measure a. Normalised by ||eps(x_k, anchor)|| per image rather than by the curve's max:
    the ratio is dimensionless, so curves of different concepts (and models) stay comparable on
    one axis and a weak concept shows as weak; a max-normalised curve would peak at 1 for any
    concept, however faint its effect."""
    c, a = _embed(model, pairs, len(seeds))
    x = sampler.initial_latents(seeds)
    per_step = []
    for k in range(sampler.num_steps):
        eps = model.unet(torch.cat([x, x]), sampler.timesteps[k], encoder_hidden_states=torch.cat([c, a])).sample.float()
        e_c, e_a = eps.flatten(1).chunk(2)
        per_step.append(((e_c - e_a).norm(dim=1) / e_a.norm(dim=1).clamp_min(1e-12)).cpu().numpy())
        x = sampler.step(model.unet, x, k, c)
        advance(1, f"gap: step {k + 1} of {sampler.num_steps}")
    values = np.stack(per_step)  # (K, seeds)
    return InfluenceCurve(
        concept, "gap", list(range(sampler.num_steps)), [int(t) for t in sampler.timesteps],
        values.mean(1).tolist(), values.std(1).tolist(), _sigma_steps(sampler),
    )


def _sigma_steps(sampler: Sampler) -> list[float]:
    """|sigma_{k+1} - sigma_k| per step, with the previous-timestep arithmetic of DDIMScheduler."""
    scheduler = sampler.scheduler
    stride = scheduler.config.num_train_timesteps // sampler.num_steps
    alpha = [float(scheduler.alphas_cumprod[int(t)]) for t in sampler.timesteps]
    last = int(sampler.timesteps[-1]) - stride
    alpha.append(float(scheduler.alphas_cumprod[last]) if last >= 0 else float(scheduler.final_alpha_cumprod))
    sigma = np.sqrt((1 - np.array(alpha)) / np.array(alpha))
    return np.abs(np.diff(sigma)).tolist()


def _causal_curves(model, sampler: Sampler, concept: str, pairs, seeds: list[int], grid: list[int], detector: Detector, advance) -> list[InfluenceCurve]:
    """Measure b. One trajectory with the first prompt, branching at every switch point into
    the second prompt for the remaining steps: the shared prefix is sampled once, about half
    the cost of running every switch point from noise. The two curves also share their ends
    (switching at 0 in one is running the other's first prompt to K: anchor only, concept only),
    so each end is sampled once, by the curve whose prefix reaches K anyway."""
    c, a = _embed(model, pairs, len(seeds))
    K = sampler.num_steps
    timesteps = [int(sampler.timesteps[k]) if k < K else 0 for k in grid]
    scores: dict[str, dict[int, np.ndarray]] = {}
    for measure, before, after in (("causal_from", a, c), ("causal_until", c, a)):
        x, previous, scores[measure] = sampler.initial_latents(seeds), 0, {}
        for k in grid:
            x = sampler.run(model.unet, x, before, previous, k)
            if k > 0:  # k = 0 runs only the second prompt: the other curve's k = K
                final = sampler.run(model.unet, x, after, k)
                score = np.asarray(detector(sampler.decode(final)), dtype=np.float64).reshape(-1)
                if score.shape != (len(seeds),) or not np.all((score >= 0) & (score <= 1)):
                    raise ValueError(f"the detector must return one score in [0, 1] per image; got shape {score.shape}")
                scores[measure][k] = score
            advance(k - previous + (K - k if k > 0 else 0), f"{measure.replace('_', ' ')}: switch at step {k} of {K}")
            previous = k
    scores["causal_from"][0], scores["causal_until"][0] = scores["causal_until"][K], scores["causal_from"][K]
    curves = []
    for measure in ("causal_from", "causal_until"):
        values = np.stack([scores[measure][k] for k in grid])  # (grid, seeds)
        curves.append(InfluenceCurve(concept, measure, list(grid), timesteps, values.mean(1).tolist(), values.std(1).tolist()))
    return curves

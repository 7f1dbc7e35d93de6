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
  With it, each neighbour's "until" curve, so the suggestion can weigh where the concept is
  decided against where what must survive is.

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
from kscu.keysteps import scale_start, start_limit
from kscu.models import LoadedModel
from kscu.sampling import Sampler, encode_prompts
from kscu.progress import Cancelled, ProgressFn, Step


MEASURES = ("gap", "causal")
NEIGHBOUR_MEASURE = "neighbour_until"
"""A neighbour's "until" curve, measured with the causal measure (InfluenceCurve.concept names the neighbour)."""
NEIGHBOUR_SEEDS = 8
"""Seeds per neighbour: the lead pools them over every neighbour (4 x 8 images per switch point on the demo model)."""
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
    samples: list[list[float]] | None = None
    """Causal curves: the detection of every seed at every switch point (grid x seeds), for intervals."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class NeighbourLead:
    """How much earlier the neighbours are decided than the concept, with a 95 % interval.

    lead: the mean over the interior switch points (0 < k < K) of the neighbours' mean decided
    share minus the concept's, decided(k) = (u(k) - u(0)) / (u(K) - u(0)) on each "until" curve.
    Positive: at the steps where the neighbours are already fixed the concept is still open, so a
    window that starts there can take the concept back and leave the neighbours alone. The
    interval is the normal one from the per-seed shares (seeds are independent; the curves' ends,
    which normalise each share, are taken as known). neighbours: those with a usable curve.
    """

    lead: float
    low: float
    high: float
    neighbours: list[str]

    @property
    def separated(self) -> bool:
        """The neighbours are decided measurably earlier: the whole interval lies above 0."""
        return self.low > 0


@dataclass
class StartSuggestion:
    """S on the schedule used and on the paper's 50-step scale, with the preset to compare."""

    start: int
    start_of_50: int
    paper_start: int
    paper_start_of_50: int
    rule: str
    lead: NeighbourLead | None = None


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
    lead: NeighbourLead | None = None

    def curve(self, measure: str) -> InfluenceCurve | None:
        return next((c for c in self.curves if c.measure == measure), None)

    def start_on(self, num_steps: int) -> int:
        """The suggested S moved to a schedule of num_steps (a training schedule is often finer
        than the analysed one), kept below the Key Step Table's limit there."""
        return min(round(self.suggested_start * num_steps / self.num_steps), start_limit(num_steps))

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


def _decided_areas(curve: InfluenceCurve) -> np.ndarray | None:
    """Per seed, the mean decided share over the interior switch points; None for a flat curve
    (no effect to share out) or one without samples."""
    if curve.samples is None or len(curve.step_index) < 3:
        return None
    base, full = curve.value[0], curve.value[-1]
    if full - base < MIN_CAUSAL_EFFECT:
        return None
    samples = np.asarray(curve.samples, dtype=np.float64)[1:-1]  # (interior k, seeds)
    return ((samples - base) / (full - base)).mean(0)


def neighbour_lead(until: InfluenceCurve, neighbours: Sequence[InfluenceCurve]) -> NeighbourLead | None:
    """The neighbours' lead over the concept (see NeighbourLead); None when the concept's curve
    or every neighbour's is flat, or they were measured on different switch points."""
    own = _decided_areas(until)
    usable = [(n.concept, _decided_areas(n)) for n in neighbours if n.step_index == until.step_index]
    usable = [(name, areas) for name, areas in usable if areas is not None]
    if own is None or not usable:
        return None
    lead = float(np.mean([areas.mean() for _, areas in usable]) - own.mean())
    variance = own.var(ddof=1) / len(own) if len(own) > 1 else 0.0
    variance += sum(areas.var(ddof=1) / len(areas) for _, areas in usable if len(areas) > 1) / len(usable) ** 2
    half = 1.96 * math.sqrt(variance)
    return NeighbourLead(lead, lead - half, lead + half, [name for name, _ in usable])


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

    Neighbours (curves of measure NEIGHBOUR_MEASURE, when measured): a window is worth moving
    only if it can tell the concept from what must survive. When the neighbours' lead (see
    NeighbourLead) is not measurably above 0, no step separates the concept from its neighbours,
    so the curves give no reason to leave the preset and S is the kind's preset. On the demo
    model (24 causal seeds) stripes are decided later than the other styles (lead 0.15) and their
    measured window kept more than the preset, while star and red are decided with their
    neighbours (lead -0.01 and 0.00) and no window from 4 to 24 of 50 kept measurably more.

    S is clamped to 0 <= S < 0.9 K, as the Key Step Table requires. paper_start_of_50: the
    preset's start for the concept's kind (Domain.preset(kind).start_of_50; the style preset's 24
    by default), reported next to S scaled to K.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold {threshold} must lie strictly between 0 and 1")
    by_measure = {c.measure: c for c in curves}
    limit = start_limit(num_steps)
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
    paper_start = scale_start(paper_start_of_50, num_steps)
    neighbours = [c for c in curves if c.measure == NEIGHBOUR_MEASURE]
    lead = neighbour_lead(until, neighbours) if until is not None and neighbours else None
    if lead is not None:
        measured_lead = (f"the neighbours ({', '.join(lead.neighbours)}) are decided ahead of the concept by "
                         f"{lead.lead:+.2f} of their effect on average (95 % interval {lead.low:+.2f} to {lead.high:+.2f})")
        if lead.separated:
            rule += f"; {measured_lead}, so the window can start where they are fixed"
        else:
            rule = (f"{measured_lead}: no step separates the concept from them, so the curves give no reason to leave "
                    f"the {paper_start_of_50}-of-50 preset; S = {paper_start} of {num_steps} (the half-decided rule alone: {start})")
            return StartSuggestion(paper_start, paper_start_of_50, paper_start, paper_start_of_50, rule, lead)
    return StartSuggestion(start, round(start * 50 / num_steps), paper_start, paper_start_of_50, rule, lead)


def decided_start(model: LoadedModel, concept: str, kind: str, num_steps: int,
                  should_stop: Callable[[], bool] | None = None,
                  on_progress: ProgressFn | None = None) -> tuple[int, InfluenceReport]:
    """Where `concept` is half decided (suggest_start's curve rule, neighbours not weighed), as a
    window start on a schedule of num_steps, and the analysis it was read from.

    Why (UnlearnConfig.robust): a window that opens after the concept is decided leaves the
    steps that decide it as the unedited model had them, and learned prompt tokens can act there:
    on the demo model the style preset's [24, 50) let them bring stripes back on up to 29 in 100
    images, the window from where stripes are half decided ([14, 50)) on at most 8, keeping as much.
    """
    report = analyze(model, concept, kind, neighbours=(), on_progress=on_progress, should_stop=should_stop, until_only=True)
    return report.start_on(num_steps), report


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
    neighbours: Sequence[str] | None = None,
    neighbour_seeds: int | Sequence[int] = NEIGHBOUR_SEEDS,
    switch_points: int = 11,
    guidance: float = 3.0,
    threshold: float = DEFAULT_THRESHOLD,
    until_only: bool = False,
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
    judge (Domain.detector) is used when none is given; without one it is skipped and a note says so.
    With the causal measure the "until" curve of every neighbour (None: the domain's default
    neighbours; () for none) is measured on `neighbour_seeds`, each with its own phrasing and the
    judge's detector for it, so suggest_start can weigh where the concept is decided against
    where they are (a neighbour the judge cannot read is left out with a note). until_only: of the
    concept's causal curves only "causal_until", the one suggest_start reads (the "from" curve is
    for the eye; leaving it out takes about 40 % off the causal measure). Raises AnalysisCancelled
    when should_stop() returns True (checked between sampler runs).
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
    n_seeds = _seed_list(neighbour_seeds, "neighbour_seeds")
    judged_neighbours: list[tuple[str, Detector]] = []
    if "causal" in measures:
        for name in domain.default_neighbours(concept, kind) if neighbours is None else neighbours:
            judge = domain.detector(name, kind)
            if judge is None:
                notes.append(f"neighbour {name!r} left out of the window rule: the judge cannot read it")
            else:
                judged_neighbours.append((name, judge))
    branch_steps = num_steps + sum(num_steps - k for k in grid if k > 0)  # UNet steps of one branching run
    own_curves = branch_steps + num_steps if until_only else 2 * branch_steps
    work = {"gap": num_steps, "causal": own_curves + len(judged_neighbours) * (branch_steps + num_steps)}
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
            if until_only:
                curves.append(_until_curve(model, sampler, concept, "causal_until", pairs, b_seeds, grid, detector, advance))
            else:
                curves += _causal_curves(model, sampler, concept, pairs, b_seeds, grid, detector, advance)
            seconds["causal"] = time.time() - begin
            if judged_neighbours:
                begin = time.time()
                for name, judge in judged_neighbours:
                    n_pairs = domain.training_pairs(name, kind, anchor, count=len(n_seeds))
                    curves.append(_until_curve(model, sampler, name, NEIGHBOUR_MEASURE, n_pairs, n_seeds, grid, judge, advance))
                seconds["neighbours"] = time.time() - begin
    suggestion = suggest_start(curves, num_steps, preset.start_of_50, threshold)
    return InfluenceReport(
        concept, kind, domain.family, num_steps, curves, suggestion.start, suggestion.start_of_50,
        suggestion.paper_start, suggestion.paper_start_of_50, suggestion.rule, seconds, notes, suggestion.lead,
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


def _branching_scores(model, sampler: Sampler, before: torch.Tensor, after: torch.Tensor, seeds: list[int], grid: list[int],
                      detector: Detector, label: str, advance, skip_start: bool) -> dict[int, np.ndarray]:
    """Detection per seed for "`before` up to step k, `after` from k on", every k of the grid: one
    trajectory with `before`, branching into `after` at each switch point, so the shared prefix is
    sampled once (about half the cost of running every switch point from noise). skip_start:
    leave out k = 0 (only `after` from noise) when another run already sampled it."""
    K = sampler.num_steps
    x, previous, scores = sampler.initial_latents(seeds), 0, {}
    for k in grid:
        x = sampler.run(model.unet, x, before, previous, k)
        if k > 0 or not skip_start:
            final = sampler.run(model.unet, x, after, k)
            score = np.asarray(detector(sampler.decode(final)), dtype=np.float64).reshape(-1)
            if score.shape != (len(seeds),) or not np.all((score >= 0) & (score <= 1)):
                raise ValueError(f"the detector must return one score in [0, 1] per image; got shape {score.shape}")
            scores[k] = score
        advance(k - previous + (K - k if k > 0 or not skip_start else 0), f"{label}: switch at step {k} of {K}")
        previous = k
    return scores


def _curve(concept: str, measure: str, sampler: Sampler, grid: list[int], scores: dict[int, np.ndarray]) -> InfluenceCurve:
    """A causal curve from per-seed scores at every switch point; the timestep of k = K is 0 (the clean image)."""
    values = np.stack([scores[k] for k in grid])  # (grid, seeds)
    timesteps = [int(sampler.timesteps[k]) if k < sampler.num_steps else 0 for k in grid]
    return InfluenceCurve(concept, measure, list(grid), timesteps, values.mean(1).tolist(), values.std(1).tolist(), samples=values.tolist())


def _causal_curves(model, sampler: Sampler, concept: str, pairs, seeds: list[int], grid: list[int], detector: Detector, advance) -> list[InfluenceCurve]:
    """Measure b. The two curves share their ends (switching at 0 in one is running the other's
    first prompt to K: anchor only, concept only), so each end is sampled once, by the curve
    whose prefix reaches K anyway."""
    c, a = _embed(model, pairs, len(seeds))
    K = sampler.num_steps
    scores = {
        measure: _branching_scores(model, sampler, before, after, seeds, grid, detector, measure.replace("_", " "), advance, skip_start=True)
        for measure, before, after in (("causal_from", a, c), ("causal_until", c, a))
    }
    scores["causal_from"][0], scores["causal_until"][0] = scores["causal_until"][K], scores["causal_from"][K]
    return [_curve(concept, measure, sampler, grid, scores[measure]) for measure in ("causal_from", "causal_until")]


def _until_curve(model, sampler: Sampler, concept: str, measure: str, pairs, seeds: list[int], grid: list[int],
                 detector: Detector, advance) -> InfluenceCurve:
    """An "until" curve alone (its phrasing, anchor and judge labels): a neighbour's, where along the
    schedule the neighbour is decided, or the concept's own without its "from" curve. The same
    values as _causal_curves' "causal_until" for the same seeds (its k = 0 end sampled here)."""
    c, a = _embed(model, pairs, len(seeds))
    label = measure.replace("_", " ") if measure != NEIGHBOUR_MEASURE else f"neighbour {concept}"
    scores = _branching_scores(model, sampler, c, a, seeds, grid, detector, label, advance, skip_start=False)
    return _curve(concept, measure, sampler, grid, scores)

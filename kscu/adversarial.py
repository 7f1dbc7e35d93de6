"""Adversarial training (config.adversarial, experimental): an attacker inside the key-step loop, after AdvUnlearn.

The workbench's robust option is another one, config.robust (the window opened where the concept is
decided, kscu.influence.decided_start), which the measurements favour (docs/results.md);
this one is kept, reachable from the CLI and the Python API, because what it does is measured.

Why: an edit trained only on plain phrasings can be undone by a few learned prompt tokens
(kscu.attack's embedding attack). Here the trainer keeps such tokens for the concept's prompts
and, every EVERY iterations, moves them STEPS Adam steps so that the UNet being tuned predicts at
the current x_k what the frozen model predicts for the concept (e_c): the concept brought back.
Every iteration then also pulls the tuned prediction with those tokens to the erase target. The
tokens are warm-started from one attack to the next, so a few steps each time follow the edit as
it moves; trajectory reuse is untouched (the attacked conditioning is used at the same x_k).

What it does is measured, not assumed (benchmarks/red_team.py, docs/results.md), and it is not what
it aims at, so the option is labelled experimental everywhere. With the style preset as it is (a
pool of trajectories), on "striped", training seeds 0, 1, 2, 48 attack images each, the default
embedding attack brings stripes back on 94 / 88 / 88 % of a robust edit's images against 0 / 29 / 4
% of the plain edit's: training against the tokens makes the edit easier to break. On seed 1 neither
bounding the tokens' norms to the vocabulary's (85 %) nor weight 0.3 (92 %) changed that, while
weight 0 (the attacker running, its term left out) gives the plain edit's 29 %: the attacked erase
term itself does it, not a side effect. Nor did (seed 1, 2026-12-07) the anchor's prediction as the
attacked term's target instead of the negatively guided one (90 %), fresh tokens at every attack
with 8 steps instead of warm-started ones with 2 (58 %), or both (42 %): fresh tokens halve the
harm, but every attacked term tried leaves the edit easier to break than none. With the paper's walk
(pool 0) it took the embedding attack to 19 / 17 / 4 % against plain KSCU's 23 / 19 / 0 %, and
rephrasings to 2 / 0 / 0 % (8 / 0 / 0 %). Tried and dropped there (one seed, embedding ASR against
23 % for plain KSCU): more attack steps (4 every 2 or every iteration: 19-23 %), the attacked term
at a random step of the whole schedule from the frozen model's x0 estimate (21 %; with the plain
prompt there too: 21 %; weight 3: 33 % and a worse plain erasure), and the red team's own objective
on reference images of the frozen model (35 %). AdvUnlearn reports the same of UNet-side adversarial
training and robustifies the text encoder instead, which this trainer does not tune.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kscu.attack import encode_with_tokens, initial_tokens
from kscu.models import LoadedModel

TOKENS = 5
STEPS = 2
EVERY = 4
LR = 3e-2
WEIGHT = 1.0
"""Weight of the erase loss on the attacked conditioning, next to the plain one's."""


class Adversary:
    """Learned prefix tokens for the concept's prompts, attacked against the UNet being tuned."""

    def __init__(self, model: LoadedModel, concept: str, seed: int) -> None:
        self.model = model
        self.concept = concept
        self.vectors = initial_tokens(model, concept, TOKENS, torch.Generator().manual_seed(seed + 7)).requires_grad_(True)
        self.optimizer = torch.optim.Adam([self.vectors], lr=LR)

    def update(self, iteration: int, tuned, x: torch.Tensor, t: torch.Tensor, prompts: list[str], e_c: torch.Tensor) -> int:
        """Every EVERY iterations, STEPS attack steps on the tokens (one batch: a phrasing per row of x);
        returns the UNet images used.
        Only the tokens get a gradient (torch.autograd.grad): the tuned weights' .grad stay as they are."""
        if iteration % EVERY:
            return 0
        for _ in range(STEPS):
            cond = encode_with_tokens(self.model, prompts, self.concept, self.vectors, "prefix")
            with self.model.autocast():
                pred = tuned(x, t, encoder_hidden_states=cond).sample.float()
            (grad,) = torch.autograd.grad(F.mse_loss(pred, e_c), [self.vectors])
            self.optimizer.zero_grad(set_to_none=True)
            self.vectors.grad = grad
            self.optimizer.step()
        return STEPS * len(x)

    def erase_loss(self, tuned, x: torch.Tensor, t: torch.Tensor, prompts: list[str], target_c: torch.Tensor) -> torch.Tensor:
        """WEIGHT * MSE(tuned prediction with the attacked conditioning, the erase target)."""
        with torch.no_grad():
            attacked = encode_with_tokens(self.model, prompts, self.concept, self.vectors.detach(), "prefix")
        with self.model.autocast():
            pred = tuned(x, t, encoder_hidden_states=attacked).sample.float()
        return WEIGHT * F.mse_loss(pred, target_c)

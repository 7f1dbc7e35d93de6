"""The trainer: formulas on hand-made tensors, trajectory reuse, determinism, cancellation."""
import copy
import dataclasses
import random

import pytest
import torch

from kscu.config import UnlearnConfig
from kscu.demo.domain import DemoDomain
from kscu.domain import build_domain
from kscu.sampling import Sampler, encode_prompts
from kscu.trainer import UnlearnCancelled, kscu_loss, lambda1, row_steps, targets, trainable_names, unlearn
from kscu.trajectories import TrajectoryPool, Trajectories


def test_targets_match_the_formulas():
    e_c, e_0, e_a = torch.tensor([3.0]), torch.tensor([1.0]), torch.tensor([2.0])
    t = torch.tensor(500)
    target_c, target_0 = targets(e_c, e_0, e_a, t, eta=1.0)
    assert target_c.item() == pytest.approx(2.0 - 1.0 * (3.0 - 2.0))  # e_a - eta (e_c - e_a)
    assert lambda1(t).item() == pytest.approx(0.01)  # (1000 - 500) * 2e-5
    assert target_0.item() == pytest.approx(1.0 - 0.01 * (3.0 - 1.0))
    target_c2, _ = targets(e_c, e_0, e_0, t, eta=2.0)
    assert target_c2.item() == pytest.approx(1.0 - 2.0 * 2.0)  # ESD negative guidance, empty anchor


def test_loss_adds_the_anchoring_term_weighted_by_lambda2():
    pred_c, pred_0 = torch.zeros(4), torch.zeros(4)
    target_c, target_0 = torch.full((4,), 2.0), torch.full((4,), 10.0)
    assert kscu_loss(pred_c, pred_0, target_c, target_0, 1e-4).item() == pytest.approx(4.0 + 1e-4 * 100.0)
    assert kscu_loss(pred_c, None, target_c, target_0, 0.0).item() == pytest.approx(4.0)


def test_trajectory_reuse_gives_the_same_latent_as_sampling_from_scratch(micro_demo):
    sampler = Sampler(micro_demo, num_steps=10, guidance=3.0)
    cond = encode_prompts(micro_demo, ["a striped red star on a dark background", "a dotted blue circle on a light background"])
    unet = micro_demo.unet
    reused, scratch = Trajectories(sampler, 2, seed_base=7), Trajectories(sampler, 2, seed_base=7)
    x3, cost3 = reused.advance(unet, [3, 3], cond, [True, True])
    assert reused.continues(0, 4) and reused.continues(1, 4) and not reused.continues(0, 5)
    x4_reused, cost4 = reused.advance(unet, [4, 4], cond, [False, False])
    x4_scratch, cost_scratch = scratch.advance(unet, [4, 4], cond, [True, True])
    assert torch.allclose(x4_reused, x4_scratch, atol=1e-5)
    assert (cost3, cost4, cost_scratch) == (12, 4, 16)
    esd = Trajectories(sampler, 2, seed_base=7)
    _, cost = esd.advance(unet, [2, 5], cond, [True, True])  # ESD: every row from new noise at its own step
    assert cost == 4 + 10 and esd.started == 2
    with pytest.raises(ValueError, match="one step"):
        esd.advance(unet, [3, 6], cond, [False, False])


def test_a_pool_holds_the_unedited_models_trajectories_at_the_window_steps(micro_demo):
    sampler = Sampler(micro_demo, num_steps=10, guidance=3.0)
    prompts = ["a striped red star on a dark background", "a dotted blue circle on a light background"]
    chosen = iter(prompts)
    pool = TrajectoryPool(sampler, micro_demo.unet, 2, lambda: next(chosen), lambda texts: encode_prompts(micro_demo, list(texts)),
                          seed_base=7, first=4, last=10, rng=random.Random(0))
    assert pool.latents.shape[:2] == (2, 6) and pool.forwards == 2 * 9 * 2
    walked = Trajectories(sampler, 1, seed_base=7 + 1)  # the pool's second entry has seed 7 + 2
    x6, _ = walked.advance(micro_demo.unet, [6], encode_prompts(micro_demo, prompts[1:]), [True])
    assert torch.allclose(pool.latents[1, 6 - 4], x6[0], atol=1e-5)
    items, cond, x, cost = pool.sample(micro_demo.unet, [5, 5, 9], lambda: None, lambda texts: encode_prompts(micro_demo, list(texts)))
    assert len(items) == 3 and set(items) <= set(prompts) and x.shape[0] == 3 and cost == 0, "drawn up front: nothing to sample"


def test_a_pool_run_is_deterministic_leaves_the_base_alone_and_differs_from_walking_one_trajectory(micro_demo):
    base = copy.deepcopy(micro_demo.unet.state_dict())
    config = UnlearnConfig("striped", kind="style", iterations=8, num_steps=10, start_step=5, lr=1e-3, pool=6, preserve=("dotted",))
    first, second = unlearn(micro_demo, config), unlearn(micro_demo, config)
    assert first.losses == second.losses and all(torch.equal(first.params[n], second.params[n]) for n in first.params)
    assert all(torch.equal(v, base[k]) for k, v in micro_demo.unet.state_dict().items())
    walked = unlearn(micro_demo, dataclasses.replace(config, pool=0))
    assert walked.losses != first.losses
    assert unlearn(micro_demo, dataclasses.replace(config, method="esd", iterations=2)).config.pool == 0, "ESD has no pool"


def test_trajectory_rows_walk_the_window_together_and_esd_rows_draw_their_own_steps():
    domain = DemoDomain()
    steps = row_steps(UnlearnConfig("striped", iterations=5, start_step=6, num_steps=10, end_step=10, trajectories=2).resolve(domain), 5)
    assert steps == [[6, 6], [7, 7], [8, 8], [9, 9], [6, 6]]
    esd = row_steps(UnlearnConfig("striped", method="esd", iterations=50, num_steps=10, trajectories=2).resolve(domain), 50)
    assert any(a != b for a, b in esd) and all(0 <= k < 10 for row in esd for k in row)


def test_parameter_subsets():
    from kscu.demo.architecture import make_unet

    unet = make_unet(micro=True)
    xattn, noxattn = trainable_names(unet, "xattn"), trainable_names(unet, "noxattn")
    assert xattn and all(".attn2." in n for n in xattn)
    assert noxattn and not any(".attn2." in n or n.startswith("time_embedding") for n in noxattn)
    assert len(trainable_names(unet, "full")) == len(list(unet.parameters()))


def test_unlearning_is_deterministic_changes_only_the_subset_and_leaves_the_base_alone(micro_demo):
    base = copy.deepcopy(micro_demo.unet.state_dict())
    config = UnlearnConfig("striped", kind="style", iterations=12, num_steps=10, start_step=5, lr=1e-3)
    first = unlearn(micro_demo, config)
    second = unlearn(micro_demo, config)
    assert first.losses == second.losses
    assert set(first.params) == set(trainable_names(micro_demo.unet, "xattn"))
    assert any(not torch.equal(first.params[n], base[n]) for n in first.params)
    assert all(torch.equal(v, base[k]) for k, v in micro_demo.unet.state_dict().items())
    assert first.steps == [5, 6, 7, 8, 9, 5, 6, 7, 8, 9, 5, 6]
    edited = first.apply(micro_demo)
    assert all(torch.equal(edited.state_dict()[n], first.params[n]) for n in first.params)


def test_kscu_reuses_trajectories_and_esd_does_not(micro_demo):
    kscu = unlearn(micro_demo, UnlearnConfig("striped", iterations=10, num_steps=10, start_step=5, preserve=(), pool=0))
    esd = unlearn(micro_demo, UnlearnConfig("striped", method="esd", iterations=10, num_steps=10, preserve=()))
    # KSCU: two trajectories of 5 steps: 2*5 to reach step 5, then 2 per step; +3 frozen +2 tuned each.
    assert kscu.unet_forwards == 2 * (10 + 4 * 2) + 10 * (3 + 2)
    assert esd.unet_forwards == sum(2 * k for k in esd.steps) + 10 * (3 + 1)


def test_cancel_stops_between_iterations_and_keeps_the_base_bit_identical(micro_demo):
    base = copy.deepcopy(micro_demo.unet.state_dict())
    seen = []
    with pytest.raises(UnlearnCancelled, match="cancelled after 3"):
        unlearn(micro_demo, UnlearnConfig("striped", iterations=50, num_steps=10, lr=1e-2),
                on_progress=lambda p: seen.append(p.iteration), should_stop=lambda: len(seen) >= 3)
    assert all(torch.equal(v, base[k]) for k, v in micro_demo.unet.state_dict().items())


def test_cancel_while_the_trajectory_pool_is_drawn_stops_before_training(micro_demo):
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 4  # a few DDIM steps into the draw
    base = copy.deepcopy(micro_demo.unet.state_dict())
    seen = []
    with pytest.raises(UnlearnCancelled, match="while drawing the trajectory pool"):
        unlearn(micro_demo, UnlearnConfig("striped", kind="style", iterations=20, num_steps=10, start_step=5, pool=8),
                on_progress=lambda p: seen.append(p.iteration), should_stop=stop)
    assert seen == [] and len(asked) == 5
    assert all(torch.equal(v, base[k]) for k, v in micro_demo.unet.state_dict().items())


def test_empty_concept_is_refused_with_advice(micro_demo):
    with pytest.raises(ValueError, match="concept is empty"):
        unlearn(micro_demo, UnlearnConfig("  ", iterations=2))


def test_only_half_precision_cuda_models_train_under_autocast(micro_demo):
    """CPU and float32 models train as they are; fp16/bf16 on CUDA get autocast (and, for fp16,
    loss scaling, measured necessary on a GPU: scripts/cuda_precision.py)."""
    from dataclasses import replace

    cuda = torch.device("cuda")
    assert not micro_demo.half_on_cuda
    assert not replace(micro_demo, device=cuda, dtype=torch.float32).half_on_cuda
    assert not replace(micro_demo, dtype=torch.float16).half_on_cuda  # a half model on the CPU
    assert replace(micro_demo, device=cuda, dtype=torch.float16).half_on_cuda
    assert replace(micro_demo, device=cuda, dtype=torch.bfloat16).half_on_cuda


def _drift(model, unet, prompts: list[str]) -> float:
    """Mean squared change of `unet`'s prediction from the base UNet's, on fixed noisy latents."""
    cond = encode_prompts(model, prompts)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn((len(prompts), model.unet.config.in_channels, model.unet.config.sample_size, model.unet.config.sample_size), generator=gen)
    with torch.no_grad():
        return sum(float(((unet(x, t, encoder_hidden_states=cond).sample - model.unet(x, t, encoder_hidden_states=cond).sample) ** 2).mean())
                   for t in (torch.tensor(200), torch.tensor(600)))


def test_preservation_term_holds_kept_prompts_near_the_base_and_costs_a_second_trajectory(micro_demo):
    from dataclasses import replace

    config = UnlearnConfig("striped", kind="style", iterations=10, num_steps=10, start_step=5, lr=3e-3, preserve=(), pool=0)
    free = unlearn(micro_demo, config)
    held = unlearn(micro_demo, replace(config, preserve=("dotted",), preserve_weight=10.0))
    kept = micro_demo.domain.preserve_prompts(("dotted",), "style", count=6, seed=11)
    assert all("dotted" in p for p in kept)
    assert _drift(micro_demo, held.apply(micro_demo), kept) < 0.5 * _drift(micro_demo, free.apply(micro_demo), kept)
    # the kept prompt's trajectory is sampled and reused like the erased one's: twice the
    # sampling, one more frozen target and one more tuned prediction per iteration
    sampling = 2 * (10 + 4 * 2)
    assert free.unet_forwards == sampling + 10 * (3 + 2)
    assert held.unet_forwards == 2 * sampling + 10 * (4 + 3)
    # with a pool the kept prompts' trajectories come from the pool too, and are held as well (less
    # tightly in 10 iterations on the micro model: measured 0.66 of the free drift, where walking gives < 0.5)
    pooled_free, pooled_held = (unlearn(micro_demo, replace(c, pool=8)) for c in (config, replace(config, preserve=("dotted",), preserve_weight=10.0)))
    assert _drift(micro_demo, pooled_held.apply(micro_demo), kept) < 0.8 * _drift(micro_demo, pooled_free.apply(micro_demo), kept)


def test_preserving_the_erased_concept_is_refused():
    with pytest.raises(ValueError, match="both erased and preserved"):
        UnlearnConfig("striped", preserve=("dotted", "Striped")).resolve(build_domain("demo"))


def test_the_iterations_pace_leaves_the_set_up_out(micro_demo):
    """Progress.elapsed (the pace behind every ETA) starts with the first iteration: a pool's draw
    before it would make each iteration look slower and the ETA too long."""
    import time

    marks = {}
    t0 = time.perf_counter()

    def on_setup(update):
        marks["setup_end"] = time.perf_counter() - t0

    def on_progress(p):
        marks.setdefault("first", (time.perf_counter() - t0, p.elapsed))

    config = UnlearnConfig("striped", kind="style", iterations=2, num_steps=10, start_step=5, lr=1e-3, pool=4)
    unlearn(micro_demo, config, on_progress, on_setup=on_setup)
    first_call, elapsed = marks["first"]
    assert 0 < elapsed <= first_call - marks["setup_end"], "only the first iteration's own time"

"""The red team (kscu.attack, kscu.rephrase): the attacks' plumbing on the micro model, that they
leave every model as it was, and bad budgets refused before any work."""
import copy
import dataclasses
import threading

import pytest
import torch

from kscu.attack_config import AttackBudget
from kscu.attack import AttackCancelled, attack_target, encode_with_tokens, learned_tokens, red_team, token_ids
from kscu.config import UnlearnConfig
from kscu.progress import Cancelled
from kscu.rephrase import RULES, rephrase
from kscu.sampling import encode_prompts
from test_cli import run_cli

TINY = AttackBudget(prompts=4, steps=2, references=2, batch=2, num_steps=2)


def test_rephrasings_avoid_the_trained_and_tested_phrasings(micro_demo):
    domain = micro_demo.domain
    prompts = domain.evaluation_plan("striped", "style", None, 40, 1, 7).erase.prompts
    forbidden = [p.prompt for p in domain.training_pairs("striped", "style", None, count=512)]
    forbidden += domain.evaluation_plan("striped", "style", None, 2000, 1, 1234).erase.prompts
    variants = rephrase(prompts, "striped", "style", forbidden, seed=3)
    assert len(variants) == len(prompts) and {v.rule for v in variants} == set(RULES), "every rule is tried"
    banned = {f.lower() for f in forbidden}
    for v, source in zip(variants, prompts):
        assert v.source == source and v.prompt.lower() != source.lower() and v.prompt.lower() not in banned
    assert rephrase(prompts, "striped", "style", forbidden, seed=3) == variants, "deterministic"
    typo = next(v for v in variants if v.rule == "typo")
    assert "striped" not in typo.prompt.lower()


def test_a_forbidden_phrasing_is_replaced_by_the_next_rule():
    prompt = "a striped star"
    first = rephrase([prompt], "striped", "style")[0]
    second = rephrase([prompt], "striped", "style", forbidden=[first.prompt])[0]
    assert second.rule != first.rule and second.prompt != first.prompt


def test_learned_tokens_go_where_the_fillers_are_and_only_while_asked(micro_demo):
    ids, where = token_ids(micro_demo, "a striped red star", "striped", 2, "placeholder")
    tok = micro_demo.tokenizer
    assert len(ids) == tok.model_max_length and where == [2, 3]
    assert tok.convert_ids_to_tokens(ids[1:5])[0] == "a</w>" and "striped</w>" not in tok.convert_ids_to_tokens(ids)
    _, prefix = token_ids(micro_demo, "a striped red star", "striped", 2, "prefix")
    assert prefix == [1, 2]

    table = micro_demo.text_encoder.get_input_embeddings().weight.detach()
    striped = tok("striped", add_special_tokens=False).input_ids
    assert len(striped) == 1
    as_word = encode_with_tokens(micro_demo, ["a striped red star"], "striped", table[striped], "placeholder")
    assert torch.allclose(as_word, encode_prompts(micro_demo, ["a striped red star"]).float(), atol=1e-5), \
        "the word's own embedding in the placeholder gives the plain prompt's encoding"
    other = encode_with_tokens(micro_demo, ["a striped red star"], "striped", torch.randn(1, table.shape[1]), "placeholder")
    assert not torch.allclose(other, as_word, atol=1e-3)

    seen = {}
    with learned_tokens(micro_demo, [1], torch.randn(1, table.shape[1])):
        worker = threading.Thread(target=lambda: seen.setdefault("other", encode_prompts(micro_demo, ["a red star"])))
        worker.start()
        worker.join()
    assert torch.equal(seen["other"], encode_prompts(micro_demo, ["a red star"])), "another thread is never touched"


@pytest.mark.parametrize("attack", ["rephrase", "embedding", "soft"])
def test_every_attack_reports_both_models_on_the_same_seeds_and_changes_nothing(micro_demo, attack):
    edited = copy.deepcopy(micro_demo.unet)
    torch.nn.init.normal_(edited.conv_out.weight, std=0.05)
    before = {k: v.clone() for k, v in micro_demo.unet.state_dict().items()}
    text_before = {k: v.clone() for k, v in micro_demo.text_encoder.state_dict().items()}
    flags = [p.requires_grad for p in micro_demo.text_encoder.parameters()]
    seen = []
    report = red_team(micro_demo, {"edit": edited}, "striped", "style", attack, TINY, on_progress=lambda u: seen.append(u.fraction))
    assert list(report.runs) == ["unedited", "edit"] and len(report.seeds) == len(report.prompts) == len(report.attack_prompts) == 4
    for run in report.runs.values():
        assert run.pre.n == run.post.n == 4 and run.plain_images.shape == run.attack_images.shape and run.seconds > 0
        assert len(run.losses) == (0 if attack == "rephrase" else TINY.steps)
    if attack == "rephrase":
        assert report.attack_prompts != report.prompts and sum(r.n for r in report.runs["edit"].by_rule.values()) == 4
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert all(torch.equal(v, before[k]) for k, v in micro_demo.unet.state_dict().items()), "the base UNet is untouched"
    assert all(torch.equal(v, text_before[k]) for k, v in micro_demo.text_encoder.state_dict().items())
    assert [p.requires_grad for p in micro_demo.text_encoder.parameters()] == flags
    assert all(p.grad is None for p in micro_demo.text_encoder.parameters()) and all(p.grad is None for p in edited.parameters())
    out = report.to_dict()
    assert set(out["models"]["edit"]) >= {"pre_asr", "post_asr", "seconds"} and "gets 'striped' back on" in out["verdicts"]["edit"]


def test_the_attack_goes_after_the_concept_every_chosen_edit_erased():
    two = [UnlearnConfig("striped", kind="style"), UnlearnConfig("red", kind="colour")]
    one = [UnlearnConfig("Red")]
    assert attack_target({"two": two}).concept == "striped", "by default the first edit's first concept"
    red = attack_target({"two": two, "one": one}, " RED ")
    assert (red.concept, red.kind, red.also_erased) == ("red", "colour", ("striped",))
    with pytest.raises(ValueError, match=r"concept to attack \(--target\): one erased 'Red', not 'striped'"):
        attack_target({"two": two, "one": one})
    with pytest.raises(ValueError, match="no edit to attack"):
        attack_target({})


def test_a_multi_concept_edit_is_attacked_on_its_second_concept_without_the_first_in_the_prompts(micro_demo):
    from kscu.trainer import unlearn

    edit = unlearn(micro_demo, UnlearnConfig("striped", also=("red",), iterations=2, num_steps=10, pool=0, preserve=()))
    target = attack_target({"two": edit.configs}, "red")
    budget = dataclasses.replace(TINY, prompts=8)  # 2 of red's first 8 test prompts name stripes unless avoided
    report = red_team(micro_demo, {"two": edit.apply(micro_demo)}, target.concept, target.kind, "rephrase", budget,
                      avoid=target.also_erased)
    assert report.concept == "red" and report.kind == "colour" and list(report.runs) == ["unedited", "two"]
    assert not any("striped" in prompt for prompt in report.prompts + report.attack_prompts), "the other erased concept stays out"
    assert any("red" in prompt for prompt in report.prompts)


def test_a_cancelled_attack_raises_a_cancel(micro_demo):
    with pytest.raises(AttackCancelled) as info:
        red_team(micro_demo, {}, "red", "colour", "embedding", TINY, should_stop=lambda: True)
    assert isinstance(info.value, Cancelled)


@pytest.mark.parametrize("change, message", [
    ({"steps": 0}, "steps: 0 is not a whole number"),
    ({"tokens": 9}, "tokens: 9 learned tokens"),
    ({"lr": 0.0}, "lr: 0.0 is out of range"),
    ({"position": "middle"}, "position: 'middle' is unknown"),
])
def test_a_bad_budget_is_refused_by_name(micro_demo, change, message):
    with pytest.raises(ValueError, match=message):
        red_team(micro_demo, {}, "striped", "style", "embedding", AttackBudget(**change))


def test_an_unknown_attack_or_an_unjudged_model_is_refused(micro_demo_dir, micro_demo):
    from kscu.models import load_model

    with pytest.raises(ValueError, match="attack: 'gradient' is unknown"):
        red_team(micro_demo, {}, "striped", "style", "gradient")
    generic = load_model(str(micro_demo_dir), device="cpu", family="sd1")
    with pytest.raises(ValueError, match="needs a judge"):
        red_team(generic, {}, "striped", "style", "rephrase", TINY)


def test_cli_attack_refuses_a_bad_budget_before_loading(tmp_path):
    done = run_cli("attack", "--model", str(tmp_path / "none"), "--edit", str(tmp_path / "e"), "--lr", "5")
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == \
        "error: lr: 5.0 is out of range; give a learning rate above 0 and at most 1 (default 0.03)"


# --- robust erasure: the window where the concept is decided (config.robust) ---------------------------

def test_robust_erasure_opens_the_window_where_the_concept_is_decided(micro_demo):
    from kscu.config import UnlearnConfig
    from kscu.influence import decided_start
    from kscu.progress import Cancelled
    from kscu.trainer import ANALYSIS_SHARE, open_where_decided, unlearn
    from kscu.validation import ConfigError, check_config

    settings = dict(kind="colour", iterations=2, num_steps=10)
    before = {k: v.clone() for k, v in micro_demo.unet.state_dict().items()}
    start, report = decided_start(micro_demo, "red", "colour", 10)
    preset = unlearn(micro_demo, UnlearnConfig("red", **settings)).config.start_step
    assert start != preset, "the measured start differs from the preset's here, so the test can tell them apart"
    heard = []
    robust = unlearn(micro_demo, UnlearnConfig("red", robust=True, **settings),
                     on_progress=lambda p: heard.append(("iteration", p.fraction)),
                     on_setup=lambda u: heard.append((u.message, u.fraction)))
    assert robust.config.robust and robust.config.start_step == start == round(report.suggested_start * 10 / report.num_steps)
    assert robust.config.pool, "the colour preset draws a trajectory pool after the analysis"
    analysis = [fraction for message, fraction in heard if message.startswith("Measuring where 'red' is decided")]
    assert analysis and analysis[-1] == ANALYSIS_SHARE and analysis == sorted(analysis), "the analysis is reported first"
    setup = [fraction for message, fraction in heard if message != "iteration"]
    assert setup == sorted(setup) and setup[-1] == 1.0 and len(setup) > len(analysis), "then the pool's draw, up to 1"
    assert heard.index(("iteration", 0.5)) > max(i for i, (m, _) in enumerate(heard) if m != "iteration"), "then the iterations"
    assert len(robust.losses) == 2, "iterations the user gives are kept"
    checked = check_config(UnlearnConfig("red", robust=True, kind="colour", num_steps=10), micro_demo)
    opened, planned = open_where_decided(micro_demo, checked).config, checked.config
    assert checked.keep_passes and opened.start_step == start
    assert opened.iterations == round(planned.iterations * (planned.end_step - start) / (planned.end_step - planned.start_step)) \
        != planned.iterations, "the preset's iterations keep the preset's passes over the measured window"
    assert check_config(UnlearnConfig("red", robust=True, kind="colour", num_steps=10, iterations=planned.iterations),
                        micro_demo).keep_passes, "the preset's number typed (the UI's field shows it) counts as the preset's"
    assert unlearn(micro_demo, UnlearnConfig("red", robust=True, start_step=preset, **settings)).config.start_step == preset, \
        "a start the user gives is kept"
    with pytest.raises(ConfigError, match="robust"):
        unlearn(micro_demo, UnlearnConfig("red", robust=True, method="esd", iterations=2))
    with pytest.raises(Cancelled):
        unlearn(micro_demo, UnlearnConfig("red", robust=True, **settings), should_stop=lambda: True)
    assert all(torch.equal(v, before[k]) for k, v in micro_demo.unet.state_dict().items())


# --- adversarial training (config.adversarial, experimental) --------------------------------------------

def test_robust_erasure_trains_against_its_own_attacker_and_leaves_the_base_alone(micro_demo):
    from kscu.adversarial import EVERY, STEPS
    from kscu.config import UnlearnConfig
    from kscu.trainer import unlearn

    settings = dict(kind="style", iterations=2 * EVERY, num_steps=10, start_step=5)
    before = {k: v.clone() for k, v in micro_demo.unet.state_dict().items()}
    plain = unlearn(micro_demo, UnlearnConfig("striped", **settings))
    robust = unlearn(micro_demo, UnlearnConfig("striped", adversarial=True, **settings))
    attacks = 2 * STEPS  # iterations 0 and EVERY attack; every iteration adds one attacked prediction
    assert robust.unet_forwards == plain.unet_forwards + attacks + settings["iterations"]
    assert robust.config.adversarial and robust.losses != plain.losses, "the attacked conditioning adds to the loss"
    assert unlearn(micro_demo, UnlearnConfig("striped", adversarial=True, **settings)).losses == robust.losses, "deterministic"
    assert all(torch.equal(v, before[k]) for k, v in micro_demo.unet.state_dict().items())
    assert all(p.grad is None for p in micro_demo.text_encoder.parameters())


def test_robust_erasure_is_a_switch_everywhere(micro_demo, tmp_path):
    from kscu.config import UnlearnConfig, from_inputs
    from kscu.validation import ConfigError, validate

    for field, label in (("adversarial", "adversarial training"), ("robust", "robust erasure")):
        with pytest.raises(ConfigError, match=label):
            validate(UnlearnConfig("striped", **{field: "yes"}))
        assert getattr(from_inputs({"concept": "striped", field: "true"}), field) is True
        assert f"--{field}" in run_cli("unlearn", "--help").stdout and f"--{field}" in run_cli("quick-erase", "--help").stdout


# --- on the shipped model: the attacks find what the plain prompts miss ----------------------------

SOFT_KSCU_MIN = 0.5
"""The soft upper bound on the KSCU edit of "striped" (measured on 24 images, default budget: 0.9)."""
EMBEDDING_GAIN_MIN = 0.1
"""Learned tokens on the KSCU edit: stripes on at least this much more of the images than the plain
prompts (measured 0 -> 0.21 on 24 images: 5 images; the bound leaves two images of slack)."""


@pytest.fixture(scope="module")
def striped_attacks(demo_model):
    """The style preset's KSCU edit of "striped" walking one trajectory (pool=0, the paper's reuse,
    where the attacks were measured) and its adversarially trained twin, attacked with the default budget. With the
    preset's pool the learned tokens gained less than EMBEDDING_GAIN_MIN on these 24 images (one run,
    2026-12-01): that edit is harder to attack, which the red-team benchmark has yet to measure."""
    from kscu.config import UnlearnConfig
    from kscu.trainer import unlearn

    unets = {label: unlearn(demo_model, UnlearnConfig("striped", pool=0, adversarial=adversarial)).apply(demo_model)
             for label, adversarial in (("KSCU", False), ("adversarial", True))}
    return {attack: red_team(demo_model, unets, "striped", attack=attack) for attack in ("embedding", "soft")}


@pytest.mark.slow
def test_plain_prompts_say_erased_but_the_upper_bound_attack_gets_stripes_back(striped_attacks):
    soft = striped_attacks["soft"]
    assert soft.runs["unedited"].pre.value >= 0.9, "the unedited model draws stripes when asked"
    for label in ("KSCU", "adversarial"):
        assert soft.runs[label].pre.value <= 0.1, f"the {label} edit passes the plain-prompt check"
    assert soft.runs["KSCU"].post.value >= SOFT_KSCU_MIN, "a free soft prompt brings stripes back on most images"


@pytest.mark.slow
def test_learned_tokens_find_stripes_the_plain_prompts_do_not(striped_attacks):
    kscu = striped_attacks["embedding"].runs["KSCU"]
    assert kscu.post.value >= kscu.pre.value + EMBEDDING_GAIN_MIN
    assert striped_attacks["embedding"].runs["unedited"].post.value >= 0.9, "the attack does not break what was never erased"

"""Several concepts in one job: each concept's own preset, the two schedules, the edit file, the
evaluation that keeps the other erased concepts out of each concept's prompts, the CLI."""
import json
import subprocess
import sys

import pytest
import torch

from conftest import HANG_GUARD_SECONDS, REPO
from kscu.config import UnlearnConfig, from_inputs
from kscu.demo.domain import DemoDomain
from kscu.trainer import schedule_order, unlearn
from kscu.validation import ConfigError, check_config

SMALL = {"iterations": 4, "num_steps": 10}


def test_each_further_concept_takes_its_own_kinds_preset(micro_demo):
    striped, red = check_config(UnlearnConfig("striped", also=("red",), anchor="plain", iterations=7, seed=3), micro_demo).parts
    assert (striped.kind, striped.anchor, striped.also) == ("style", "plain", ("red",))
    assert (red.kind, red.anchor, red.also) == ("colour", "yellow", ()), "red gets the colour preset's anchor, not the style preset's"
    assert (red.iterations, red.seed, red.num_steps) == (7, 3, striped.num_steps), "iterations and job-wide settings are shared"
    assert red.lr == micro_demo.domain.preset("colour").lr and striped.lr == micro_demo.domain.preset("style").lr
    dotted_first = check_config(UnlearnConfig("dotted", also=("striped",)), micro_demo).config
    star, square = check_config(UnlearnConfig("star", also=("square",)), micro_demo).parts
    assert (star.anchor, square.anchor) == ("circle", "circle"), "no concept becomes another the same job erases"
    striped, plain = check_config(UnlearnConfig("striped", also=("plain",)), micro_demo).parts
    assert (striped.anchor, plain.anchor) == ("", ""), "no substitute left: the sentence without the word"
    assert "striped" not in dotted_first.preserve, "a preset never keeps a concept the same job erases"


@pytest.mark.parametrize("request_, field, message", [
    (UnlearnConfig("striped", also=("Striped",)), "also", "named twice"),
    (UnlearnConfig("striped", also=("red", " ")), "also", "empty"),
    (UnlearnConfig("striped", also="red"), "also", "not a list"),
    (UnlearnConfig("striped", also=("red",), schedule="together"), "schedule", "choose in_turn or interleaved"),
    (UnlearnConfig("striped", also=("red",), preserve=("red",)), "preserve", "both erased and preserved"),
    (UnlearnConfig("star", also=("square",), anchor="square"), "anchor", "erased in the same job"),
])
def test_a_wrong_multi_concept_request_names_its_field(micro_demo, request_, field, message):
    with pytest.raises(ConfigError, match=message) as caught:
        check_config(request_, micro_demo)
    assert caught.value.field == field


def test_text_and_multiselect_inputs_become_the_list_of_further_concepts():
    assert from_inputs({"concept": "striped", "also": " red, dark "}).concepts == ("striped", "red", "dark")
    assert from_inputs({"concept": "striped", "also": ["red", ""]}).also == ("red",)
    assert from_inputs({"concept": "striped", "also": ""}).also == ()


def test_several_concepts_interleave_unless_asked_otherwise():
    """Interleaved kept more than walking the windows in turn (6 of 6 cells met the goal against 4 of 6,
    docs/results.md), so it is the default of the config, the recipe and the CLI alike."""
    import inspect

    from kscu.cli import _concept_inputs, _parser
    from kscu.recipes import quick_erase

    assert UnlearnConfig("striped", also=("red",)).schedule == "interleaved"
    assert inspect.signature(quick_erase).parameters["schedule"].default == "interleaved"
    assert _parser().parse_args(["quick-erase", "--concepts", "striped,red"]).schedule == "interleaved"
    args = _parser().parse_args(["unlearn", "--concepts", "striped,red", "--out", "x"])
    assert from_inputs(_concept_inputs(args)).schedule == "interleaved"


def test_schedules_order_every_iteration_once():
    assert schedule_order([3, 2], "in_turn") == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert schedule_order([2, 2], "interleaved") == [(0, 0), (1, 0), (0, 1), (1, 1)]
    uneven = schedule_order([4, 2], "interleaved")
    assert sorted(uneven) == schedule_order([4, 2], "in_turn") and [n for n, _ in uneven] == [0, 1, 0, 0, 1, 0]
    assert schedule_order([3], "interleaved") == schedule_order([3], "in_turn")


@pytest.mark.parametrize("schedule", ["in_turn", "interleaved"])
def test_one_job_trains_each_concept_on_its_own_window(micro_demo, schedule):
    config = UnlearnConfig("striped", also=("star",), schedule=schedule, **SMALL)
    striped, star = check_config(config, micro_demo).parts
    assert striped.start_step != star.start_step, "the style and object presets have different windows"
    result = unlearn(micro_demo, config)
    assert [c.concept for c in result.configs] == ["striped", "star"] and len(result.losses) == 8
    expected = [0] * 4 + [1] * 4 if schedule == "in_turn" else [0, 1] * 4
    assert result.trained_concepts == expected
    for n, part in enumerate((striped, star)):
        steps = [k for k, c in zip(result.steps, result.trained_concepts) if c == n]
        assert all(part.start_step <= k < part.end_step for k in steps), (part.concept, steps)
    assert unlearn(micro_demo, config).losses == result.losses, "deterministic"
    assert not any(name in p for p in result.sanity.prompts for name in ("striped", "star")), "the sanity check names no erased concept"


def test_each_window_in_turn_starts_its_own_adam(micro_demo):
    """Adam's first step moves every parameter by lr * |g| / (|g| + eps): at most the learning rate,
    and nearly all of it (the micro model's gradients are small enough for eps to show: median 0.93
    lr measured); later steps, whose moments remember other gradients, move less (median 0.62 lr
    for an interleaved job's second concept, which shares the optimizer)."""
    def first_step_of_second_concept(schedule: str) -> tuple[torch.Tensor, float]:
        config = UnlearnConfig("striped", also=("red",), schedule=schedule, pool=0, **SMALL)  # no pool: quicker, same optimizer
        seen: list[dict[str, torch.Tensor]] = []

        def keep(progress) -> None:
            seen.append({n: p.detach().clone() for n, p in progress.unet.named_parameters() if "attn2.to_k" in n})

        result = unlearn(micro_demo, config, on_progress=keep)
        i = result.trained_concepts.index(1)
        moved = torch.cat([(seen[i][n] - seen[i - 1][n]).abs().flatten() for n in seen[i]])
        return moved[moved > 0], result.configs[1].lr

    moved, lr = first_step_of_second_concept("in_turn")
    assert moved.max().item() <= lr * (1 + 1e-4) and moved.median().item() > 0.85 * lr, "a fresh Adam's first step"
    shared, lr = first_step_of_second_concept("interleaved")
    assert shared.median().item() < 0.75 * lr, "a shared Adam's step is scaled by the moments it already holds"


def test_the_edit_file_keeps_every_concept(micro_demo, tmp_path):
    from kscu.export import edit_stem, load_edit, save_edit

    result = unlearn(micro_demo, UnlearnConfig("striped", also=("red",), schedule="interleaved", iterations=2, num_steps=10))
    loaded = load_edit(save_edit(result, tmp_path / "two"))
    assert [c.to_dict() for c in loaded.configs] == [c.to_dict() for c in result.configs]
    assert loaded.trained_concepts == result.trained_concepts == [0, 1, 0, 1]
    assert edit_stem(result) == "kscu-striped-red-kscu"


def test_no_test_prompt_names_another_erased_concept():
    domain = DemoDomain()
    plan = domain.evaluation_plan("striped", None, None, 60, 60, 0, avoid=("red", "dark"))
    prompts = plan.erase.prompts + plan.retain.prompts
    assert not any(" red " in f" {p} " or " dark " in f" {p} " for p in prompts)
    assert "red" in plan.groups["colour"], "the judge still reads every colour, red included"
    assert plan.retain.prompts != domain.evaluation_plan("striped", None, None, 60, 60, 0).retain.prompts
    assert domain.evaluation_plan("striped", None, None, 6, 6, 0, avoid=()).erase.prompts == \
        domain.evaluation_plan("striped", None, None, 6, 6, 0).erase.prompts, "nothing avoided: the same prompts as before"
    star = domain.evaluation_plan("star", None, None, 4, 8, 0, avoid=("circle",))
    assert "circle" not in star.neighbours
    with pytest.raises(ValueError, match="erased by the same edit"):
        domain.evaluation_plan("star", None, ["circle"], 4, 4, 0, avoid=("circle",))


def test_compare_measures_every_concept_a_multi_concept_edit_erased(micro_demo, tmp_path):
    from kscu.recipes import compare
    from kscu.runs import load_run, record_run

    cheap = {"iterations": 2, "num_steps": 10, "pool": 0, "preserve": ()}
    both = unlearn(micro_demo, UnlearnConfig("striped", also=("red",), schedule="in_turn", **cheap))
    twice = unlearn(micro_demo, UnlearnConfig("striped", also=("red",), schedule="interleaved", **cheap))
    out = compare(micro_demo, {"two": both, "again": twice}, seeds=[0], n_erase=4, n_retain=4)
    assert set(out.reports) == set(out.others) == {"two", "again"}
    [red] = out.others["two"]
    assert red.concept == "red" and red.after is not None and red.also_erased == ("striped",)
    assert out.reports["two"].also_erased == ("red",), "the compared concept's prompts name no red"
    assert out.others["again"][0].before == red.before, "the unedited side of red is sampled once"
    assert [o["report"]["concept"] for o in out.to_dict()["edits"]["two"]["other_concepts"]] == ["red"]
    from ui.results import comparison_table

    table = comparison_table(out.reports, out.others)
    red_rows = table[table["erased concept"] == "red"]
    assert set(table["erased concept"]) == {"striped", "red"}
    assert (red_rows["after (two)"] != "").sum() == (red_rows["after (again)"] != "").sum() > 0, "red's rows once per edit that erased it"
    record = load_run(tmp_path, record_run(tmp_path, out, micro_demo).id)
    assert record.concepts == ["striped", "red"] and "two: red: UA" in record.metrics


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kscu", *args], cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)


@pytest.mark.slow
def test_cli_erases_several_concepts_and_reports_each(micro_demo_dir, tmp_path):
    model, out = str(micro_demo_dir), tmp_path / "two"
    done = run_cli("unlearn", "--model", model, "--concepts", "striped,red", "--schedule", "interleaved", "--iterations", "2",
                   "--num-steps", "10", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert [c["concept"] for c in payload["concepts"]] == ["striped", "red"] and payload["config"]["schedule"] == "interleaved"
    evaluated = run_cli("evaluate", "--model", model, "--edit", str(out), "--n-erase", "4", "--n-retain", "4", "--steps", "4", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    reports = json.loads(evaluated.stdout)["concepts"]
    assert [(r["concept"], r["also_erased"]) for r in reports] == [("striped", ["red"]), ("red", ["striped"])]
    assert all(r["after"] is not None and "verdict" in r for r in reports)
    one = json.loads(run_cli("evaluate", "--model", model, "--edit", str(out), "--concept", "red", "--n-erase", "4", "--n-retain", "4",
                             "--steps", "4", "--json").stdout)
    assert one["concept"] == "red" and one["also_erased"] == ["striped"]
    attacked = run_cli("attack", "--model", model, "--edit", str(out), "--target", "red", "--attack", "rephrase", "--prompts", "4",
                       "--no-record", "--json")
    assert attacked.returncode == 0, attacked.stderr
    assert json.loads(attacked.stdout)["concept"] == "red" and set(json.loads(attacked.stdout)["models"]) == {"unedited", str(out)}
    wrong = run_cli("attack", "--model", model, "--edit", str(out), "--target", "star", "--no-record")
    assert wrong.returncode == 2 and "erased 'striped', 'red', not 'star'" in wrong.stderr.strip().splitlines()[-1]
    quick = run_cli("quick-erase", "--model", model, "--concepts", "star,dark", "--iterations", "2", "--n-erase", "4", "--n-retain", "4",
                    "--json")
    assert quick.returncode == 0, quick.stderr
    quick = json.loads(quick.stdout)
    assert [(r["concept"], r["also_erased"]) for r in quick["reports"]] == [("star", ["dark"]), ("dark", ["star"])]
    assert [c["kind"] for c in quick["concepts"]] == ["object", "background"] and len(quick["verdicts"]) == 2
    both = run_cli("unlearn", "--model", model, "--concepts", "striped,red", "--concept", "dotted", "--out", str(tmp_path / "x"))
    assert both.returncode == 2 and "--concepts alone" in both.stderr
    twice = run_cli("unlearn", "--concepts", "striped,striped", "--out", str(tmp_path / "y"))
    assert twice.returncode == 2 and twice.stderr.strip().splitlines()[-1] == \
        "error: --also: 'striped' is named twice; erase each concept once"


def test_a_lora_of_a_multi_concept_edit_and_a_foreign_edit_name_every_concept(micro_demo, tmp_path):
    from safetensors.torch import save_file

    from kscu.importing import open_edit
    from kscu.lora import low_rank, save_lora

    result = unlearn(micro_demo, UnlearnConfig("striped", also=("red",), iterations=2, num_steps=10))
    lora = save_lora(low_rank(result, micro_demo, 2), tmp_path / "two.safetensors", "kohya")
    assert [c.concept for c in open_edit(lora, micro_demo).configs] == ["striped", "red"]
    foreign = tmp_path / "theirs.safetensors"
    save_file({name: tensor.contiguous() for name, tensor in result.params.items()}, str(foreign))
    imported = open_edit(foreign, micro_demo, "striped, red")
    assert [(c.concept, c.kind, c.method) for c in imported.configs] == [("striped", "style", "imported"), ("red", "colour", "imported")]


def test_no_training_phrasing_or_kept_prompt_names_another_erased_concept(micro_demo, monkeypatch):
    """A style's anchor ("dotted star on dark" -> "plain star on dark", drawn by the unedited model)
    would teach star and dark back while dotted is erased (measured: star UA 0.24, dark 0.00)."""
    domain, seen = micro_demo.domain, []
    real_pairs, real_keep = domain.training_pairs, domain.preserve_prompts

    def pairs(concept, kind, anchor, count=64, seed=0, avoid=()):
        found = real_pairs(concept, kind, anchor, count, seed, avoid)
        seen.append((concept, tuple(avoid), [t for p in found for t in (p.prompt, p.anchor)]))
        return found

    def keep(preserve, kind, count=64, seed=0, avoid=()):
        found = real_keep(preserve, kind, count, seed, avoid)
        seen.append(("kept", tuple(avoid), found))
        return found

    monkeypatch.setattr(domain, "training_pairs", pairs)
    monkeypatch.setattr(domain, "preserve_prompts", keep)
    unlearn(micro_demo, UnlearnConfig("dotted", also=("star", "dark"), iterations=1, num_steps=10, pool=2))
    assert {(c, a) for c, a, _ in seen if c != "kept"} >= {("dotted", ("star", "dark")), ("star", ("dotted", "dark")),
                                                           ("dark", ("dotted", "star"))}
    for _, avoid, texts in seen:
        assert not [t for t in texts if any(f" {a} " in f" {t} " for a in avoid)], avoid

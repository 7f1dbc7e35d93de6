"""Sweeps (kscu.sweep): every cell runs once, a stopped sweep resumes where it stopped, a cell's
figures are the evaluation of the edit its setting makes, Ray runs the same cells on two workers,
and a sweep that cannot run says why before anything is written."""
import json
import sys

import pytest

from kscu.cli import main
from kscu.config import UnlearnConfig
from kscu.evaluation import evaluate_edit, metric_rows
from kscu.sweep import STORE_FILE, Cell, Setting, SweepError, SweepPlan, evaluate_base, grid_settings, read_store, run_cell, run_sweep
from kscu.trainer import unlearn

TINY = {"num_steps": 8, "iterations": 2, "n_erase": 3, "n_retain": 3, "eval_steps": 2, "threads": 1}


def tiny_plan(model_dir, seeds=(0, 1), settings=None, **changes) -> SweepPlan:
    settings = settings or grid_settings(["kscu", "esd"], ["preset"])
    return SweepPlan(("striped",), tuple(seeds), tuple(settings), model=str(model_dir), **TINY | changes)


class Stop(Exception):
    pass


def test_a_stopped_sweep_keeps_its_finished_cells_and_a_rerun_runs_only_the_rest(micro_demo_dir, tmp_path):
    plan = tiny_plan(micro_demo_dir)

    def stop_after_first(cell) -> None:
        raise Stop

    with pytest.raises(Stop):
        run_sweep(plan, tmp_path, on_cell=stop_after_first)
    stored, bases = read_store(tmp_path / STORE_FILE)
    assert list(stored) == [Cell("kscu preset", "striped", 0)] and list(bases) == ["striped 3+3"]
    first = stored[Cell("kscu preset", "striped", 0)]

    seen = []
    result = run_sweep(plan, tmp_path, on_cell=seen.append)
    assert result.ran == 3 and [c.cell for c in seen] == plan.cells()[1:]
    assert [c.cell for c in result.cells] == plan.cells() and result.cells[0] == first
    assert run_sweep(plan, tmp_path).ran == 0, "a finished sweep runs nothing again"
    lines = (tmp_path / STORE_FILE).read_text().splitlines()
    assert len(lines) == 1 + 4, "one base line and one line per cell, none written twice"

    esd = next(c for c in result.cells if c.setting == "esd")
    kscu = next(c for c in result.cells if c.setting == "kscu preset")
    assert esd.config["method"] == "esd" and esd.config["iterations"] == kscu.config["iterations"] == 2
    assert (esd.config["start_step"], esd.config["end_step"]) == (0, 8), "ESD trains every step"


def test_a_cell_reports_the_evaluation_of_the_edit_its_setting_makes(micro_demo_dir, micro_demo):
    plan = tiny_plan(micro_demo_dir, seeds=(3,), settings=[Setting.parse("late:start_step=5:lr=1e-3")])
    cell = run_cell(plan, plan.cells()[0], evaluate_base(plan, "striped", plan.sizes[0]))
    config = UnlearnConfig("striped", start_step=5, lr=1e-3, seed=3, num_steps=8, iterations=2).resolve(micro_demo.domain)
    assert cell.config == config.to_dict()
    edited = unlearn(micro_demo, config).apply(micro_demo)
    report = evaluate_edit(micro_demo, edited, "striped", n_erase=3, n_retain=3, num_steps=2)
    before, after = ({r.name: r for r in metric_rows(m)} for m in (report.before, report.after))
    assert cell.ua.value == pytest.approx(after["UA"].rate.value) and cell.ua.n == 3
    ira = before["IRA"].change(after["IRA"])
    assert cell.drops["ira"].value == pytest.approx(ira.value) and cell.drops["ira"].low == pytest.approx(ira.interval[0], abs=1e-4)
    assert set(cell.drops) == {"ira"} | {f"cra {g}" for g in report.before["cra"]}
    assert cell.goal_met == (cell.ua.value >= 0.95 and all(d.value <= 0.05 for d in cell.drops.values()))


@pytest.mark.slow
def test_ray_runs_the_cells_on_two_local_workers(micro_demo_dir, tmp_path):
    import ray

    plan = tiny_plan(micro_demo_dir, settings=grid_settings(["kscu"], ["preset"]))
    during = []
    result = run_sweep(plan, tmp_path / "ray", use_ray=True, workers=2, on_cell=lambda cell: during.append(ray.is_initialized()))
    assert result.ran == 2 and during == [True, True] and not ray.is_initialized(), "the cells went through Ray, which is shut down after"
    local = run_sweep(plan, tmp_path / "local")
    assert [(c.ua, c.drops, c.config) for c in result.cells] == [(c.ua, c.drops, c.config) for c in local.cells], \
        "a Ray worker computes what this process computes"
    assert run_sweep(plan, tmp_path / "ray", use_ray=True, workers=2).ran == 0


@pytest.mark.parametrize("make,names", [
    (lambda: grid_settings(["kscu", "uce"], ["preset"]), "methods: unknown method 'uce'"),
    (lambda: grid_settings(["kscu"], ["18"]), "windows: '18' is not a window"),
    (lambda: Setting.parse("wide"), None),
    (lambda: Setting.parse("wide:trajectories"), "NAME:field=value"),
    (lambda: Setting.parse("x:lrr=3"), "no unlearning field lrr"),
    (lambda: Setting.parse("x:lr=fast"), "lr: 'fast' is not a number"),
    (lambda: SweepPlan((), (0,), (Setting("a"),)), "concepts: the sweep has none"),
    (lambda: SweepPlan(("striped",), (0,), (Setting("a"), Setting("a"))), "two settings share a name (a)"),
    (lambda: SweepPlan(("striped",), (0,), (Setting("a"),), n_erase=0), "n_erase: 0 is too small"),
])
def test_bad_sweeps_are_refused_with_what_to_do(make, names):
    if names is None:  # a bare name is a setting of the preset itself
        assert make() == Setting("wide")
        return
    with pytest.raises(SweepError, match=names.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_a_setting_that_cannot_run_fails_before_anything_is_written(micro_demo_dir, tmp_path):
    plan = tiny_plan(micro_demo_dir, settings=grid_settings(["kscu"], ["5-40"]))
    with pytest.raises(SweepError, match="setting 'kscu 5-40', concept 'striped': end_step: 40 is out of range"):
        run_sweep(plan, tmp_path / "never")
    assert not (tmp_path / "never").exists()
    with pytest.raises(SweepError, match="judge: this model has none"):
        run_sweep(tiny_plan(micro_demo_dir, family="sd1"), tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_without_ray_the_sweep_says_how_to_get_it(micro_demo_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(SweepError, match="ray: not installed; pip install ray"):
        run_sweep(tiny_plan(micro_demo_dir), tmp_path, use_ray=True)


def test_a_store_cut_short_loses_only_its_last_line_and_a_damaged_one_is_refused(tmp_path):
    store = tmp_path / STORE_FILE
    store.write_text('{"base": "striped", "report": {"n_erase": 3, "n_retain": 3}}\n{"setting": "kscu pre')
    cells, bases = read_store(store)
    assert cells == {} and list(bases) == ["striped 3+3"]
    store.write_text('{"setting": "kscu pre\n{"base": "striped", "report": {"n_erase": 3, "n_retain": 3}}\n')
    with pytest.raises(SweepError, match="line 1 is not JSON; move the file away"):
        read_store(store)


def test_the_sweep_command_writes_its_table_and_plot(micro_demo_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--model", str(micro_demo_dir), "--concepts", "striped", "--seeds", "0", "--methods", "kscu", "--windows",
            "preset,4-8", "--iterations", "2", "--num-steps", "8", "--n-erase", "3", "--n-retain", "3", "--eval-steps", "2",
            "--threads", "1", "--out", str(out), "--json"]
    assert main(args) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["ran"] == 2 and [c["setting"] for c in payload["cells"]] == ["kscu preset", "kscu 4-8"]
    assert payload["cells"][1]["config"]["start_step"] == 4 and set(payload["cells"][0]["ua"]) >= {"value", "low", "high", "n"}
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["summary"] == payload["summary"] and (out / "sweep.png").stat().st_size > 0
    assert main(["sweep", "--model", str(micro_demo_dir), "--concepts", "striped", "--seeds", "zero", "--out", str(out)]) == 2
    assert "seeds: 'zero' is not a comma list of whole numbers" in capsys.readouterr().err

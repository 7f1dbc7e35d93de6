"""Run history (kscu.runs): the commands record their runs, and the history lists, reopens,
compares and deletes them from the CLI and the app's Runs tab; an unknown id or a meaningless
comparison is one readable line; nothing is ever half written or overwritten."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from functools import partial

import gradio as gr
import pytest

from conftest import HANG_GUARD_SECONDS, REPO
from kscu import runs
from kscu.runs import RECORD_FILE, RunNotFound, compare_runs, delete_run, list_runs, load_run, record_run


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kscu", *args], cwd=REPO, capture_output=True, text=True, input=stdin,
                          timeout=HANG_GUARD_SECONDS)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The CLI's contract for bad input: exit 2, one line starting 'error:', no traceback."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    return lines[0]


@pytest.fixture
def edit():
    """A finished unlearning as the history sees it (settings, loss curve, base model hash); the
    tensors play no part in a record, so none are made here (tests that run a model use micro_edit)."""
    from kscu.config import UnlearnConfig
    from kscu.trainer import UnlearnResult

    config = UnlearnConfig("striped", kind="style", iterations=10, num_steps=10, start_step=5, lr=1e-3)
    return UnlearnResult(config, {}, "micro-demo", "ab" * 32, "demo", losses=[0.5, 0.4, 0.3], steps=[5, 6, 7], seconds=1.5)


# -- the library --------------------------------------------------------------------------------


def test_an_imported_edit_records_only_what_it_says_about_itself(edit, tmp_path):
    """Its config holds defaults for every training setting: recorded, they would read as how it was trained."""
    from kscu.config import IMPORTED, UnlearnConfig

    foreign = dataclasses.replace(edit, config=UnlearnConfig("striped", kind="style", method=IMPORTED, also=("red",)),
                                  others=[UnlearnConfig("red", kind="colour", method=IMPORTED)])
    record = record_run(tmp_path, foreign)
    assert record.config["unlearn"] == {"concept": "striped", "kind": "style", "method": IMPORTED, "also": ["red"]}
    assert record.config["unlearn red"] == {"concept": "red", "kind": "colour", "method": IMPORTED, "also": []}
    assert record_run(tmp_path, edit).config["unlearn"]["lr"] == 1e-3  # our own edits keep every setting


def test_an_unlearning_is_recorded_with_what_repeats_it(edit, tmp_path):
    record = record_run(tmp_path, edit, edit_path="runs/striped")
    assert record.kind == "unlearn" and record.concepts == ["striped"] and record.method == "kscu"
    assert record.id.endswith("-striped-kscu") and record.id[:15].replace("-", "").isdigit()
    assert record.model_hash == edit.base_hash and record.versions["torch"]
    assert record.config["unlearn"] == edit.config.to_dict() and record.losses == edit.losses
    assert record.edit == "runs/striped" and record.thumbnail is None  # an unlearning draws no grid
    stored = json.loads((tmp_path / record.id / RECORD_FILE).read_text())
    assert stored["id"] == record.id and stored["format"] == runs.FORMAT
    assert load_run(tmp_path, record.id) == record  # what is read back is what was written
    assert load_run(tmp_path, record.id[:15]) == record  # a unique prefix of the id will do


def test_runs_in_the_same_second_never_overwrite_each_other(edit, tmp_path):
    first, second = record_run(tmp_path, edit), record_run(tmp_path, edit)
    assert first.id != second.id
    assert {r.id for r in list_runs(tmp_path)} == {first.id, second.id}
    assert [r.id for r in list_runs(tmp_path)] == sorted([first.id, second.id], reverse=True)  # newest first


def test_nothing_half_written_is_listed(edit, tmp_path, monkeypatch):
    def broken(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runs.RunRecord, "to_dict", broken)
    with pytest.raises(OSError):
        record_run(tmp_path, edit)
    assert list(tmp_path.iterdir()) == []  # the claimed folder went with the failure
    monkeypatch.undo()
    (tmp_path / "20260101-000000-interrupted").mkdir()  # a crash between mkdir and record.json
    (tmp_path / "striped").mkdir()
    (tmp_path / "striped" / "run.json").write_text("{}")  # an edit folder (unlearn --out runs/striped)
    kept = record_run(tmp_path, edit)
    assert [r.id for r in list_runs(tmp_path)] == [kept.id]
    with pytest.raises(RunNotFound, match="edit folder"):
        load_run(tmp_path, "striped")


def test_unknown_or_ambiguous_ids_name_the_id_and_how_to_list_them(edit, tmp_path):
    with pytest.raises(RunNotFound) as missing:
        load_run(tmp_path, "20991231-nope")
    assert "'20991231-nope'" in str(missing.value) and "runs list" in str(missing.value) and "\n" not in str(missing.value)
    record_run(tmp_path, edit), record_run(tmp_path, edit)
    with pytest.raises(RunNotFound, match="ambiguous"):
        load_run(tmp_path, "2")
    for bad in ("", "../etc", ".deleted-x"):
        with pytest.raises(RunNotFound):
            load_run(tmp_path, bad)


def test_compare_gives_each_figure_its_change_and_refuses_meaningless_pairs(edit, tmp_path):
    a = record_run(tmp_path, edit)
    longer = dataclasses.replace(edit, config=dataclasses.replace(edit.config, iterations=20), losses=[0.2])
    b = record_run(tmp_path, longer)
    comparison = compare_runs(a, b)
    loss = next(d for d in comparison.deltas if d.name == "final loss")
    assert loss.delta == pytest.approx(longer.losses[-1] - edit.losses[-1], abs=1e-4)
    assert comparison.config_changes["unlearn.iterations"] == (10, 20)
    assert comparison.to_dict()["metrics"]["final loss"]["delta"] == loss.delta
    with pytest.raises(ValueError, match="itself"):
        compare_runs(a, load_run(tmp_path, a.id))
    other = record_run(tmp_path, dataclasses.replace(edit, base_hash="0" * 64, base_source="another-model"))
    with pytest.raises(ValueError, match="different models") as different:
        compare_runs(a, other)
    assert a.id in str(different.value) and other.id in str(different.value)


def test_intervals_overlap_says_whether_a_change_is_beyond_the_noise():
    a, b, c = runs.Metric(0.9, 0.8, 0.95, 100), runs.Metric(0.5, 0.4, 0.6, 100), runs.Metric(0.85, 0.75, 0.9, 100)
    assert runs.MetricDelta("UA", a, b).overlap is False and runs.MetricDelta("UA", a, c).overlap is True
    assert runs.MetricDelta("loss", runs.Metric(1.0), runs.Metric(2.0)).overlap is None
    assert runs.MetricDelta("UA", a, None).delta is None


def test_delete_removes_the_record_and_only_a_record(edit, tmp_path):
    keep, gone = record_run(tmp_path, edit), record_run(tmp_path, edit)
    assert delete_run(tmp_path, gone.id).id == gone.id
    assert [r.id for r in list_runs(tmp_path)] == [keep.id] and not (tmp_path / gone.id).exists()
    (tmp_path / "striped").mkdir()
    (tmp_path / "striped" / "run.json").write_text("{}")
    with pytest.raises(RunNotFound):
        delete_run(tmp_path, "striped")  # an edit folder is never deleted as a run
    assert (tmp_path / "striped" / "run.json").exists()


def test_an_evaluation_records_metrics_with_intervals_and_a_thumbnail(micro_demo, micro_edit, tmp_path):
    from kscu.evaluation import evaluate_edit
    from kscu.grids import comparison_grids

    edited = micro_edit.apply(micro_demo)
    report = evaluate_edit(micro_demo, edited, "striped", n_erase=4, n_retain=4, num_steps=2, kind="style")
    grids = comparison_grids(micro_demo, edited, "striped", seeds=[0, 1], num_steps=2, kind="style")
    record = record_run(tmp_path, report, micro_demo, edit=micro_edit, grids=grids)
    ua = record.metrics["UA"]
    assert ua.value == pytest.approx(report.after["ua"], abs=1e-4) and ua.n == 4 and ua.low <= ua.value <= ua.high
    assert record.metrics["unedited: UA"].value == pytest.approx(report.before["ua"], abs=1e-4)
    assert record.verdict in ("passed", "failed", "undecided") and record.seeds == [0, 1]
    assert record.model_hash == micro_demo.model_hash and record.config["evaluation"]["n_erase"] == 4
    from PIL import Image

    with Image.open(record.thumbnail_path) as thumbnail:
        assert thumbnail.width <= runs.THUMBNAIL_SIZE[0] and thumbnail.height <= runs.THUMBNAIL_SIZE[1]
    row = dict(zip(runs.SUMMARY_COLUMNS, runs.summary_row(record)))
    assert row["UA"].startswith(f"{ua.value:.3f} [") and row["kind"] == "evaluate"
    with pytest.raises(ValueError, match="model"):
        record_run(tmp_path, report)  # only an unlearning names its model itself
    with pytest.raises(TypeError, match="cannot record"):
        record_run(tmp_path, "not a run", micro_demo)


def test_a_multi_concept_edit_and_its_evaluation_record_every_concept(micro_demo, tmp_path):
    from kscu.config import UnlearnConfig
    from kscu.evaluation import evaluate_each
    from kscu.trainer import unlearn

    result = unlearn(micro_demo, UnlearnConfig("striped", also=("red",), iterations=2, num_steps=10))
    trained = record_run(tmp_path, result)
    assert trained.concepts == ["striped", "red"] and trained.config["unlearn red"]["kind"] == "colour"
    reports = evaluate_each(micro_demo, result.apply(micro_demo), [("striped", "style"), ("red", "colour")], n_erase=2, n_retain=2,
                            num_steps=2)
    measured = record_run(tmp_path, reports, micro_demo, edit=result)
    assert measured.concepts == ["striped", "red"] and {"striped: UA", "red: UA", "red: IRA"} <= set(measured.metrics)
    assert measured.verdict.count("/") == 1, "one verdict per concept"
    row = dict(zip(runs.SUMMARY_COLUMNS, runs.summary_row(measured)))
    assert row["UA"].startswith("striped: ") and "; red: " in row["UA"] and row["concept"] == "striped, red"


# -- the command line ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_commands_record_their_runs_and_runs_lists_shows_and_compares_them(micro_demo_dir, tmp_path):
    model, history = str(micro_demo_dir), str(tmp_path / "history")
    edit = tmp_path / "striped"
    common = ("--model", model, "--runs", history, "--json")
    unlearned = run_cli("unlearn", *common, "--concept", "striped", "--kind", "style", "--iterations", "3", "--num-steps", "10", "--out", str(edit))
    assert unlearned.returncode == 0, unlearned.stderr
    assert (edit / "run.json").is_file()  # the edit folder's own layout is unchanged
    evaluated = run_cli("evaluate", *common, "--edit", str(edit), "--n-erase", "4", "--n-retain", "4", "--steps", "2",
                        "--grid", str(tmp_path / "grid.png"))
    assert evaluated.returncode == 0, evaluated.stderr
    attacked = run_cli("attack", *common, "--edit", str(edit), "--attack", "rephrase", "--prompts", "4")
    assert attacked.returncode == 0, attacked.stderr
    unrecorded = run_cli("evaluate", *common, "--edit", str(edit), "--n-erase", "2", "--n-retain", "2", "--steps", "2", "--no-record")
    assert unrecorded.returncode == 0 and "run" not in json.loads(unrecorded.stdout)
    ids = {name: json.loads(done.stdout)["run"] for name, done in (("unlearn", unlearned), ("evaluate", evaluated), ("attack", attacked))}

    listed = run_cli("runs", "list", "--runs", history, "--json")
    assert listed.returncode == 0, listed.stderr
    assert {r["id"]: r["kind"] for r in json.loads(listed.stdout)["runs"]} == {ids[k]: k for k in ids}
    text = run_cli("runs", "list", "--runs", history).stdout
    assert all(run_id in text for run_id in ids.values()) and "UA" in text.splitlines()[0]

    shown = json.loads(run_cli("runs", "show", ids["evaluate"], "--runs", history, "--json").stdout)
    assert shown["edit"] == str(edit) and shown["config"]["unlearn"]["iterations"] == 3 and shown["thumbnail"] == runs.THUMBNAIL_FILE
    assert {"UA", "IRA", "unedited: UA"} <= set(shown["metrics"]) and shown["metrics"]["UA"]["n"] == 4
    attack = json.loads(run_cli("runs", "show", ids["attack"], "--runs", history, "--json").stdout)
    assert {"ASR plain prompts (edit)", "ASR rephrase attack (edit)", "ASR rephrase attack (unedited)"} <= set(attack["metrics"])
    assert (tmp_path / "history" / ids["attack"] / runs.THUMBNAIL_FILE).is_file()

    compared = run_cli("runs", "compare", ids["unlearn"], ids["evaluate"], "--runs", history, "--json")
    assert compared.returncode == 0, compared.stderr
    result = json.loads(compared.stdout)
    assert result["a"] == ids["unlearn"] and "evaluate" in " ".join(result["notes"])
    assert result["metrics"]["UA"]["a"] is None and result["metrics"]["UA"]["b"]["n"] == 4


@pytest.mark.slow
def test_quick_erase_records_its_grids_and_verdict(micro_demo_dir, tmp_path):
    done = run_cli("quick-erase", "--model", str(micro_demo_dir), "--runs", str(tmp_path), "--concept", "striped", "--iterations", "2",
                   "--n-erase", "4", "--n-retain", "4", "--json")
    assert done.returncode == 0, done.stderr
    record = load_run(tmp_path, json.loads(done.stdout)["run"])
    assert record.kind == "quick-erase" and record.thumbnail_path.is_file() and record.seeds == [0, 1, 2, 3]
    assert "image change: concept SSIM" in record.metrics and record.verdict in ("passed", "failed", "undecided")


def cli(capsys, monkeypatch, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """`python -m kscu ARGS` in this process (the runs commands need no model: no second start-up)."""
    import io

    from kscu.cli import main

    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_runs_commands_refuse_bad_input_in_one_line(edit, tmp_path, capsys, monkeypatch):
    history = str(tmp_path)
    a = record_run(tmp_path, edit)
    other = record_run(tmp_path, dataclasses.replace(edit, base_hash="f" * 64, base_source="another-model"))

    def error_line(*args: str) -> str:
        code, _, err = cli(capsys, monkeypatch, "runs", *args, "--runs", history)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (code, err)
        return lines[0]

    for action in (("show", "20991231-nope"), ("compare", a.id, "20991231-nope"), ("delete", "20991231-nope", "--yes")):
        line = error_line(*action)
        assert "20991231-nope" in line and "runs list" in line, line
    assert "itself" in error_line("compare", a.id, a.id)
    line = error_line("compare", a.id, other.id)
    assert "different models" in line and a.id in line and other.id in line

    code, out, err = cli(capsys, monkeypatch, "runs", "delete", a.id, "--runs", history, stdin="n\n")
    assert code == 0 and f"delete run {a.id}" in err and "nothing deleted" in out
    assert load_run(tmp_path, a.id).id == a.id
    code, out, err = cli(capsys, monkeypatch, "runs", "delete", a.id, "--runs", history, stdin="y\n")
    assert code == 0 and f"deleted run {a.id}" in out, err
    assert [r.id for r in list_runs(tmp_path)] == [other.id]
    code, out, _ = cli(capsys, monkeypatch, "runs", "show", other.id[:15], "--runs", history)
    assert code == 0 and out.startswith(f"{other.id}: unlearn of striped (kscu) on another-model") and "final loss" in out
    assert "no runs recorded" in cli(capsys, monkeypatch, "runs", "list", "--runs", str(tmp_path / "empty"))[1]


def test_one_subprocess_says_an_unknown_id_in_one_line(tmp_path):
    """The real entry point (python -m kscu) once: exit 2 and one line, no traceback."""
    line = one_error_line(run_cli("runs", "show", "20991231-nope", "--runs", str(tmp_path)))
    assert "'20991231-nope'" in line and "runs list" in line


# -- the app ------------------------------------------------------------------------------------


def test_app_jobs_record_runs_and_the_history_survives_a_restart(micro_demo, micro_edit, tmp_path):
    from ui import runs_tab
    from ui.state import WorkbenchState

    state = WorkbenchState(runs_root=tmp_path)
    state.set_model(micro_demo)
    state.submit("unlearn", "a finished unlearning", lambda job: micro_edit).wait()
    state.submit("export", "not a run", lambda job: "a path").wait()
    [record] = list_runs(tmp_path)  # recorded before the job's wait() returned; the export is not a run
    assert record.kind == "unlearn" and record.model_hash == micro_edit.base_hash

    restarted = WorkbenchState(runs_root=tmp_path)  # a new app process over the same folder
    table, count, *_ = runs_tab.refresh(restarted)
    assert list(table["id"]) == [record.id] and "1 runs" in count
    summary, metrics, config, _thumbnail = runs_tab.show(restarted, record.id)
    assert record.id in summary and config["unlearn"]["concept"] == "striped" and "final loss" in list(metrics["figure"])

    second = record_run(tmp_path, dataclasses.replace(micro_edit, losses=micro_edit.losses[:3]))
    title_a, _, title_b, _, deltas, notes = runs_tab.compare(restarted, record.id, second.id)
    assert record.id in title_a and second.id in title_b and "final loss" in list(deltas["figure"]) and "Same model" in notes


def test_the_runs_tab_asks_before_deleting_and_turns_bad_input_into_messages(edit, tmp_path):
    from ui import runs_tab
    from ui.common import friendly
    from ui.state import WorkbenchState

    state = WorkbenchState(runs_root=tmp_path)
    record = record_run(tmp_path, edit)
    message, confirm, _keep, pending = runs_tab.ask_delete(state, record.id)
    assert "Confirm delete" in message and confirm.visible is True and pending == record.id
    assert load_run(tmp_path, record.id).id == record.id  # asking deleted nothing
    assert runs_tab.cancel_delete()[3] is None
    done = runs_tab.confirm_delete(state, pending)
    assert record.id in done[0] and list_runs(tmp_path) == [] and done[4].empty

    for fn, args, words in ((runs_tab.show, (None,), "Choose a run"), (runs_tab.show, ("nope",), "'nope'"),
                            (runs_tab.compare, (record.id, None), "two runs"), (runs_tab.confirm_delete, (None,), "Delete…"),
                            (runs_tab.ask_delete, ("",), "Choose a run")):
        with pytest.raises(gr.Error, match=words):
            friendly(partial(fn, state))(*args)


def test_the_runs_tab_builds_into_the_app(micro_demo, tmp_path):
    from ui.layout import build_app
    from ui.state import WorkbenchState

    state = WorkbenchState(runs_root=tmp_path)
    state.set_model(micro_demo)
    demo = build_app(state)
    names = {getattr(fn, "api_name", None) for fn in demo.fns.values()}
    assert {"runs_list", "run_show", "runs_compare", "run_delete", "run_delete_confirm"} <= names

"""The workbench driven through its HTTP API with gradio_client, the way a script or a Space
client would: start `python app.py`, analyse, unlearn in the background and poll, compare,
export and load back, and check that mistakes come back as readable messages.

The app runs the shipped demo model when it is built, else a micro model (same layout, noise
outputs): these tests check the plumbing and the messages, not erasure quality (tests/test_erasure.py
does that). Iterations and test-set sizes are kept small for speed.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import gradio as gr
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from conftest import HANG_GUARD_SECONDS, running_workbench

pytestmark = pytest.mark.slow  # starts the app and runs real jobs through it

ITERATIONS = 20
POLL_LIMIT_SECONDS = HANG_GUARD_SECONDS
ENDPOINTS = {
    "/quick_erase", "/quick_erase_status", "/cancel_quick_erase", "/load_model", "/analyze", "/analysis_status", "/cancel_analysis",
    "/key_steps", "/start_unlearning", "/unlearn_status", "/cancel_unlearning", "/compare", "/compare_status", "/cancel_compare",
    "/export_edit", "/export_lora", "/export_checkpoint", "/export_pipeline", "/load_edit", "/red_team", "/red_team_status", "/cancel_red_team", "/try_to_break",
    "/runs_list", "/run_show", "/runs_compare", "/run_delete", "/run_delete_confirm",
}


@pytest.fixture(scope="module")
def client(workbench_model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("app-api") / "app.log"
    with running_workbench(workbench_model_dir, log, "--quick-iterations", str(ITERATIONS), "--quick-eval", "12") as url:
        yield Client(url, verbose=False)


def finished(client: Client, api_name: str, *args) -> tuple:
    """Poll a status endpoint until its job is no longer waiting or running; its outputs then."""
    deadline = time.time() + POLL_LIMIT_SECONDS
    while time.time() < deadline:
        out = client.predict(*args, api_name=api_name)
        if "<b>Running</b>" not in out[0] and "<b>Waiting</b>" not in out[0]:
            return out
        time.sleep(0.5)
    pytest.fail(f"{api_name} still running after {POLL_LIMIT_SECONDS} s")


def value_of(output):
    """An output's value; outputs that also change visibility come as an update dict holding it."""
    return output["value"] if isinstance(output, dict) and output.get("__type__") == "update" else output


def unlearn_args(concept: str = "striped", method: str = "kscu", iterations: int = ITERATIONS) -> tuple:
    # concept, kind, method, iterations, lr, params, anchor, keep, seed, num_steps, start, end, previews
    return (concept, "style", method, iterations, 3e-4, "xattn", "", "", 0, 50, 24, 50, 2)


def test_every_stage_has_a_named_endpoint(client):
    assert ENDPOINTS <= set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])


def test_every_input_and_output_of_the_api_is_labelled(client):
    """A script sees what each value is (gradio names a component without a label `value_<id>`);
    the polling timers are the page's own business and are not returned at all."""
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    for name in ENDPOINTS:
        for value in api[name]["returns"]:
            assert value["label"] and not value["label"].startswith("value_"), f"{name} returns an unlabelled {value['component']}"
            assert value["component"] != "Timer", f"{name} returns its polling timer"
        for parameter in api[name]["parameters"]:
            assert parameter["label"] and not parameter["label"].startswith("parameter_"), f"{name} takes an unlabelled {parameter['component']}"
    labels = lambda name: [value["label"] for value in api[name]["returns"]]  # noqa: E731
    assert labels("/quick_erase_status") == ["Progress", "Before the edit", "After the edit",
                                             "Metrics: share of test images the judge read as asked", "Summary"]
    assert labels("/compare_status") == ["Progress", "Before (the unedited model)", "After the edit: title", "After the edit",
                                         "After the ESD edit: title", "After the ESD edit", "Image change",
                                         "Metrics before and after (share of test images the judge read as asked)", "Notes"]
    assert labels("/load_model") == ["Loaded model", "Model status"]
    assert [p["label"] for p in api["/load_model"]["parameters"]] == ["Model source", "Folder, file or hub id", "Device", "Model family",
                                                                      "Judge (optional)"]
    # one value per label: what predict returns lines up with the documented names
    for name in ("/quick_erase_status", "/analysis_status", "/unlearn_status"):
        assert len(client.predict(api_name=name)) == len(labels(name))
    assert len(client.predict(False, api_name="/compare_status")) == len(labels("/compare_status"))


def test_analyze_overlays_concepts_and_reads_off_a_window(client):
    started = client.predict(["striped", "dotted"], "auto", ["gap"], 10, 2, "", api_name="/analyze")  # its progress display
    assert "influence of striped, dotted" in started

    progress, plot, reading, table = finished(client, "/analysis_status")
    assert "<b>Finished</b>" in progress
    assert plot["type"] == "matplotlib" and plot["plot"].startswith("data:image/png")
    for concept in ("striped", "dotted"):
        assert f"**{concept}** (style): suggested **S =" in reading
    assert "paper's style preset S = 5 (= 24 of 50)" in reading
    assert table["headers"] == ["step", "striped: gap", "dotted: gap"]
    assert [row[0] for row in table["data"]] == list(range(10))


def test_key_steps_summarise_the_table(client):
    figure, text = client.predict("style", 50, 24, 50, 250, api_name="/key_steps")
    assert "**250 iterations** train **26 distinct steps** (24–49)" in text
    assert "52% of the 50-step schedule" in text
    assert figure is not None  # the analysis above exists, so the window is drawn on its curves


def test_unlearning_runs_in_the_background_with_live_progress(client):
    started = client.predict(*unlearn_args(), api_name="/start_unlearning")  # its progress display
    assert "<b>Waiting</b>" in started or "<b>Running</b>" in started, "Start returns at once; the training runs in the background"
    assert "unlearn &#x27;striped&#x27; (kscu, 20 iterations)" in started

    progress, loss, heading, gallery, summary, record = finished(client, "/unlearn_status")
    assert "<b>Finished</b>" in progress and record["state"] == "done"
    assert record["iterations_done"] == ITERATIONS
    assert record["config"]["start_step"] == 24 and record["config"]["method"] == "kscu"
    assert loss["type"] == "matplotlib"
    # 2 previews over 20 iterations; the gallery shows the latest: 2 prompts x 2 seeds, upscaled.
    assert heading.endswith(f"at iteration {ITERATIONS}")
    assert [g["caption"] for g in gallery] == [f"{word}, seed {seed}" for word in ("striped", "plain") for seed in (0, 1)]
    assert "last KSCU edit (current)" in summary and "| iterations | 20 |" in summary


def test_a_second_heavy_job_is_refused_and_cancel_stops_the_first(client):
    client.predict(*unlearn_args(iterations=100_000), api_name="/start_unlearning")
    with pytest.raises(AppError, match="already running"):
        client.predict(["striped"], "auto", ["gap"], 10, 2, "", api_name="/analyze")
    client.predict(api_name="/cancel_unlearning")
    progress, *_, record = finished(client, "/unlearn_status")
    assert "<b>Cancelled</b>" in progress
    assert record["state"] == "cancelled" and "base model is unchanged" in record["message"]
    # the cancelled run did not replace the kept edit
    assert "| iterations | 20 |" in client.predict(api_name="/unlearn_status")[4]


def test_compare_shows_kscu_and_esd_side_by_side_with_metrics(client):
    client.predict(*unlearn_args(method="esd", iterations=5), api_name="/start_unlearning")
    assert finished(client, "/unlearn_status")[-1]["state"] == "done"  # the run record

    client.predict(["kscu", "esd"], "", "0, 1", True, 10, 12, api_name="/compare")
    progress, before, after_title, after, second_title, after_esd, change, table, notes = finished(client, "/compare_status", False)
    assert "<b>Finished</b>" in progress
    assert after_title == "#### After the KSCU edit" and second_title == "#### After the ESD edit"
    for image in (before, after, after_esd):
        assert Path(value_of(image)).is_file()
    table = value_of(table)
    assert table["headers"] == ["metric", "before", "after (KSCU)", "change (KSCU)", "after (ESD)", "change (ESD)"]
    metrics = [row[0] for row in table["data"]]
    assert {"UA", "IRA", "CRA mean"} <= set(metrics)
    assert "**KSCU:** The model drew *striped*" in notes and "**ESD:**" in notes
    assert "Metrics read by demo classifier (exact)" in notes
    # the judge-free image change: one SSIM column per edit, the concept's row first, then the neighbours' mean
    assert "| grid row | SSIM (KSCU) | SSIM (ESD) |" in change
    assert "*(erased concept)* |" in change and "| **neighbours, mean** |" in change


def test_red_team_attacks_the_kept_edits_and_reports_asr_with_intervals(client):
    started, *_ = client.predict(["kscu", "esd"], "rephrase", 10, 1, 8, "striped", api_name="/red_team")
    assert "rephrase attack on KSCU edit and ESD edit (&#x27;striped&#x27;)" in started
    progress, table, grid, notes = finished(client, "/red_team_status")
    assert "<b>Finished</b>" in progress and Path(value_of(grid)).is_file()
    table = value_of(table)
    assert table["headers"] == ["model", "plain prompts", "rephrase attack", "attack time"]
    assert [row[0] for row in table["data"]] == ["unedited", "KSCU edit", "ESD edit"]
    assert all("(" in row[1] and "–" in row[1] for row in table["data"]), "every rate carries its 95 % interval"
    assert "an attacker with" in notes and "Wordings tried:" in notes


def test_red_team_without_an_edit_ticked_says_what_to_do(client):
    with pytest.raises(AppError, match="Tick at least one edit to attack"):
        client.predict([], "embedding", 10, 1, 8, api_name="/red_team")


def test_export_and_load_back_an_edit(client):
    path, metadata = client.predict("kscu", api_name="/export_edit")
    assert Path(path).name == "kscu-striped-kscu.safetensors" and Path(path).stat().st_size > 0
    assert metadata["concept"] == "striped" and metadata["config"]["iterations"] == ITERATIONS

    details, message = client.predict(handle_file(path), "", api_name="/load_edit")
    assert message.startswith("Loaded a KSCU edit of *striped*")
    assert details["base_hash"] == metadata["base_hash"]

    lora, note = client.predict("kscu", 2, "kohya", api_name="/export_lora")
    assert Path(lora).name == "kscu-striped-kscu-lora-r2-kohya.safetensors" and note.startswith("Rank-2 LoRA (kohya layout, float16)")
    details, message = client.predict(handle_file(lora), "", api_name="/load_edit")  # our LoRA names its concept
    assert message.startswith("Loaded an imported edit of *striped*") and details["method"] == "imported"
    with pytest.raises(AppError, match="rank: 999 is not possible for this edit; choose a whole number from 1 to"):
        client.predict("kscu", 999, "kohya", api_name="/export_lora")
    checkpoint = value_of(client.predict("kscu", api_name="/export_checkpoint"))
    assert Path(checkpoint).name == "kscu-striped-kscu-model.safetensors" and Path(checkpoint).stat().st_size > 1_000_000


def test_quick_erase_runs_the_preset_path_in_one_call(client):
    client.predict("dotted", None, api_name="/quick_erase")
    progress, before, after, table, summary = finished(client, "/quick_erase_status")
    assert "<b>Finished</b>" in progress
    assert Path(value_of(before)).is_file() and Path(value_of(after)).is_file()
    assert "Erased *dotted* (style) with KSCU: 20 iterations on steps 24–49 of 50" in summary
    assert "**Image change** (no judge needed" in summary and "the concept's row **" in summary
    assert "Measured by demo classifier (exact) on 12 + 12 prompts" in summary
    assert "UA" in [row[0] for row in value_of(table)["data"]]
    # the finished job is in the run history, and reopens with its settings
    runs, *_ = client.predict(api_name="/runs_list")
    row = next(dict(zip(runs["headers"], r)) for r in runs["data"] if r[2] == "quick-erase" and r[3] == "dotted")
    assert row["UA"] and row["verdict"] in ("passed", "failed", "undecided")
    _summary, _metrics, config, thumbnail = client.predict(row["id"], api_name="/run_show")
    assert config["unlearn"]["concept"] == "dotted" and config["evaluation"]["n_erase"] == 12 and Path(thumbnail).is_file()


def test_quick_erase_of_two_concepts_measures_each(client):
    client.predict("dotted", None, False, ["dark"], api_name="/quick_erase")
    progress, _, _, table, summary = finished(client, "/quick_erase_status")
    assert "<b>Finished</b>" in progress
    assert "Erased *dotted* (style) with KSCU: 20 iterations" in summary and "*dark* (background): 20 iterations" in summary
    assert "each concept's test prompts name none of the others erased" in summary
    table = value_of(table)
    assert table["headers"][0] == "erased concept"
    assert {row[0] for row in table["data"]} == {"dotted", "dark"} and ["dark", "UA"] in [row[:2] for row in table["data"]]


@pytest.mark.parametrize("api_name, args, message", [
    ("/start_unlearning", ("",) + unlearn_args()[1:], "Type or choose the concept"),
    ("/start_unlearning", ("a cat",) + unlearn_args()[1:2] + ("kscu", 20, 3e-4, "xattn", "", "", 0, 50, 40, 30, 2), "window start 40 is not before its end 30"),
    ("/start_unlearning", ("striped", "style", "kscu", 20, 0, "xattn", "", "", 0, 50, 24, 50, 2), "learning rate (lr): 0 is out of range"),
    ("/start_unlearning", ("striped", "style", "kscu", 20, -0.001, "xattn", "", "", 0, 50, 24, 50, 2), "learning rate (lr): -0.001 is out of range"),
    ("/start_unlearning", ("striped", "style", "kscu", 20, 1e3, "xattn", "", "", 0, 50, 24, 50, 2), "at most 0.01"),
    ("/start_unlearning", ("striped", "style", "kscu", 0, 3e-4, "xattn", "", "", 0, 50, 24, 50, 2), "iterations: 0 is not 'use the preset'"),
    ("/analyze", (["a cat"], "auto", ["gap"], 10, 2, ""), "the kind of 'a cat' cannot be told on this model"),
    ("/compare", (["kscu"], "", "one, two", True, 10, 12), "Seeds must be whole numbers"),
    ("/run_show", ("20991231-nope",), "no run '20991231-nope'"),
    ("/runs_compare", ("", ""), "Choose two runs"),
    ("/run_delete_confirm", (), "Press Delete… first"),
    ("/load_model", ("Hugging Face hub id", "owner/model", "auto"), "runs offline"),
    ("/load_model", ("Local folder or file", "/no/such/folder", "auto"), "no such file or folder"),
    ("/load_model", ("Embedded demo model", "", "auto", "auto", "/no/such/judge"), "judge /no/such/judge: could not load a CLIP model"),
])
def test_mistakes_come_back_as_messages_not_tracebacks(client, api_name, args, message):
    with pytest.raises(AppError) as error:
        client.predict(*args, api_name=api_name)
    assert message in str(error.value)
    assert "Traceback" not in str(error.value)
    if api_name == "/start_unlearning":  # refused before a job started: the last run is still the one shown
        assert "<b>Running</b>" not in client.predict(api_name="/unlearn_status")[0]


def test_a_bad_upload_is_named_by_its_file_name_not_the_servers_path(client, tmp_path):
    junk = tmp_path / "my-edit.safetensors"
    junk.write_bytes(b"this is not a safetensors file")
    with pytest.raises(AppError) as error:
        client.predict(handle_file(str(junk)), "", api_name="/load_edit")
    text = str(error.value)
    assert "my-edit.safetensors is not a valid .safetensors file" in text
    assert tempfile.gettempdir() not in text and "gradio" not in text


def test_starting_again_right_after_a_cancel_never_says_cancel_it(client):
    client.predict(*unlearn_args(iterations=100_000), api_name="/start_unlearning")
    client.predict(api_name="/cancel_unlearning")
    try:  # the run may already have stopped (then this starts a new one) or still be stopping
        client.predict(*unlearn_args(iterations=100_000), api_name="/start_unlearning")
    except AppError as error:
        assert "still stopping after the cancel" in str(error) and "cancel it" not in str(error)
    client.predict(api_name="/cancel_unlearning")
    assert "<b>Cancelled</b>" in finished(client, "/unlearn_status")[0]


def test_a_model_without_a_judge_still_shows_what_the_edit_changed(client):
    """The demo model loaded as a generic SD1.x model (family sd1, no judge): Quick erase measures no
    UA / IRA / CRA, says so, and reports the judge-free image change. Runs last among the server
    tests: it loads the demo model again afterwards, which drops the edits made above."""
    summary, header = client.predict("Embedded demo model", "", "auto", "sd1", "", api_name="/load_model")
    try:
        assert "**Family:** Stable Diffusion 1.x (generic" in summary and "**Judge:** none" in summary
        assert " · sd1 · no judge · " in header
        client.predict("Van Gogh", None, api_name="/quick_erase")  # a built-in style: the kind is inferred
        progress, before, after, table, summary = finished(client, "/quick_erase_status")
        assert "<b>Finished</b>" in progress
        assert Path(value_of(before)).is_file() and Path(value_of(after)).is_file()
        assert "Erased *Van Gogh* (style) with KSCU: 20 iterations" in summary
        assert "**Image change** (no judge needed" in summary and "This model has no judge" in summary
        assert table.get("visible") is False
    finally:
        summary, header = client.predict("Embedded demo model", "", "auto", "auto", "", api_name="/load_model")
    assert "**Judge:** demo classifier (exact)" in summary and " · demo · demo classifier (exact) · " in header


# --- The event functions are plain Python: a few checks without a server ---


def test_unexpected_errors_become_one_readable_line():
    from ui.common import friendly

    def broken():
        raise KeyError("weights")

    with pytest.raises(gr.Error, match=r"Unexpected error \(KeyError: 'weights'\)\. The details are in the console log\."):
        friendly(broken)()
    with pytest.raises(gr.Error, match="say what to do"):
        friendly(lambda: (_ for _ in ()).throw(ValueError("say what to do")))()


def test_progress_shows_percent_elapsed_and_time_left():
    from kscu.jobs import JobSnapshot
    from ui.common import progress_html

    snap = JobSnapshot("job-1", "unlearn 'striped'", "running", 0.25, "iteration 5/20", 100.0, None, 30.0, None, [], None, None,
                       None, None, None, False)
    text = progress_html(snap)
    assert "25%" in text and "elapsed 30 s" in text and "about 1:30 left" in text and "width:25.0%" in text


def test_concepts_may_be_listed_with_commas():
    from ui.analyze_tab import parse_concepts

    assert parse_concepts(["striped, dotted", "striped", " red "]) == ["striped", "dotted", "red"]
    with pytest.raises(ValueError, match="at least one concept"):
        parse_concepts([" , "])


def test_unlearn_tab_fills_the_style_presets_anchor_and_kept_styles():
    """What a user sees in the Advanced settings after choosing "striped": the preset's values,
    including its anchor and look-alikes, so that emptying a field really means "none"."""
    from types import SimpleNamespace

    from ui.unlearn_tab import preset_fields

    iterations, lr, params, _start, _end, anchor, keep, trajectories, pool = preset_fields(SimpleNamespace(model=None), "striped", "style", "kscu", 50)
    assert (iterations, lr, params, anchor, keep, trajectories, pool.value) == (200, 1.5e-4, "xattn", "plain", "dotted, checkered", 1, 64)
    assert preset_fields(SimpleNamespace(model=None), "star", "object", "kscu", 50)[5:7] == ("square", ""), "a shape becomes a square"


def test_nudity_is_blurred_only_where_the_domain_may_show_it():
    from kscu.domain import build_domain, default_domain
    from ui.results import needs_blur

    assert not needs_blur(default_domain(), "nudity")  # the shape world has no nudity
    assert needs_blur(build_domain("sd1"), "nudity") and not needs_blur(build_domain("sd1"), "style")


def test_the_image_change_table_has_a_row_per_grid_prompt_and_a_column_per_edit():
    from kscu.retention import ImageChange
    from ui.results import change_table

    kscu = ImageChange(0.9, 30.0, {"striped": 0.4, "dotted": 0.95, "checkered": 0.85}, {"striped": 20.0, "dotted": 35.0, "checkered": 30.0}, 12)
    esd = ImageChange(0.8, 25.0, {"striped": 0.3, "dotted": 0.7, "checkered": 0.6}, {"striped": 18.0, "dotted": 25.0, "checkered": 22.0}, 12)
    table = change_table({"KSCU": kscu, "ESD": esd})
    assert "| grid row | SSIM (KSCU) | SSIM (ESD) |" in table
    assert "| striped *(erased concept)* | 0.40 | 0.30 |" in table
    assert "| **neighbours, mean** | **0.90** | **0.65** |" in table
    assert "LPIPS" not in table  # measured only where its weights are on the machine

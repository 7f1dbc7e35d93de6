"""The workbench in a real browser (Debian's chromium driven by Playwright): the non-coder's Quick
erase path in at most five clicks, then a walk through every tab. Screenshots go to
artifacts/screenshots/ (or the folder in KSCU_SCREENSHOTS) for people to look at.

Skipped where the playwright package or /usr/bin/chromium is missing (`make test` installs both;
never `playwright install`). Quick erase runs few iterations (--quick-iterations) so the test
stays short; the page is identical with the preset.
"""
from __future__ import annotations

from pathlib import Path

import os

import pytest

from conftest import HANG_GUARD_SECONDS, REPO, running_workbench

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(os.environ.get("KSCU_SCREENSHOTS") or REPO / "artifacts" / "screenshots")
JOB_TIMEOUT_MS = HANG_GUARD_SECONDS * 1000
"""Every wait in the browser: a hang guard only (on a busy 2-core machine a short job can take minutes)."""

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (make test installs it)")]


@pytest.fixture(scope="module")
def page(workbench_model_dir, tmp_path_factory):
    SHOTS.mkdir(parents=True, exist_ok=True)
    log = tmp_path_factory.mktemp("app-browser") / "app.log"
    with running_workbench(workbench_model_dir, log, "--quick-iterations", "10", "--quick-eval", "12") as url:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM),
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.get_by_text("KSCU Workbench").first.wait_for(timeout=JOB_TIMEOUT_MS)
            yield page
            browser.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def run_job(page, progress_id: str, button: str) -> None:
    """Press `button` and wait until the job it starts has finished. The progress box names its
    job (data-job), so an earlier job's "done" is not mistaken for this one's."""
    earlier = page.locator(f"#{progress_id} .kscu-progress").get_attribute("data-job")
    page.get_by_role("button", name=button, exact=True).click()
    page.locator(f'#{progress_id} .kscu-progress.done:not([data-job="{earlier}"])').wait_for(timeout=JOB_TIMEOUT_MS)


def choose(page, label: str, option: str) -> None:
    """Open a dropdown and click one of its options (two clicks, as a person would)."""
    page.get_by_label(label, exact=True).filter(visible=True).first.click()
    page.get_by_role("option", name=option).filter(visible=True).first.click()


def test_quick_erase_in_five_clicks(page):
    shot(page, "01-quick-erase-start")
    choose(page, "Concept to erase", "striped  (style)")  # clicks 1 and 2
    kind = page.get_by_label("Kind of concept", exact=True).filter(visible=True).first
    sync_api.expect(kind).to_have_value("style")  # filled in, no click
    shot(page, "02-quick-erase-chosen")
    sync_api.expect(page.get_by_role("button", name="Try to break it")).to_be_hidden()  # nothing to attack yet

    page.get_by_role("button", name="Erase", exact=True).click()  # click 3
    page.locator("#quick-progress .kscu-progress.running").wait_for(timeout=JOB_TIMEOUT_MS)
    shot(page, "03-quick-erase-running")
    page.locator("#quick-progress .kscu-progress.done").wait_for(timeout=JOB_TIMEOUT_MS)
    for image in ("quick-before", "quick-after"):
        sync_api.expect(page.locator(f"#{image} img")).to_be_visible(timeout=JOB_TIMEOUT_MS)
        box = page.locator(f"#{image} img").bounding_box()
        assert box["width"] >= 300, f"{image} is {box['width']:.0f} px wide: too small to judge"
    sync_api.expect(page.locator("#quick-metrics")).to_contain_text("UA")
    sync_api.expect(page.get_by_text("Erased striped (style) with KSCU")).to_be_visible()
    sync_api.expect(page.locator("#quick-summary")).to_contain_text("Image change (no judge needed")
    shot(page, "04-quick-erase-done")

    page.get_by_role("button", name="Try to break it").click()  # the default attack on this edit, in the Red team tab
    sync_api.expect(page.get_by_role("tab", name="Red team", selected=True)).to_be_visible(timeout=JOB_TIMEOUT_MS)
    page.locator("#redteam-progress .kscu-progress.done").wait_for(timeout=JOB_TIMEOUT_MS)
    sync_api.expect(page.locator("#redteam-asr")).to_contain_text("KSCU edit")
    sync_api.expect(page.locator("#redteam-asr")).to_contain_text("unedited")
    sync_api.expect(page.locator("#redteam-verdict")).to_contain_text("an attacker with")
    sync_api.expect(page.get_by_label("Concept to attack")).to_have_value("striped")  # the ticked edit's concept, filled in
    box = page.locator("#redteam-images img").bounding_box()
    assert box["width"] >= 300, f"the attacked images are {box['width']:.0f} px wide: too small to judge"
    shot(page, "04b-red-team")
    page.get_by_role("tab", name="Quick erase").click()


def test_every_tab_shows_its_stage(page):
    page.get_by_role("tab", name="Model").click()
    sync_api.expect(page.get_by_text("Model hash")).to_be_visible()
    sync_api.expect(page.locator("#model-summary")).to_contain_text("demo classifier (exact)")  # the judge
    sync_api.expect(page.get_by_label("Judge (optional)")).to_be_visible()
    shot(page, "05-model")

    page.get_by_role("tab", name="Analyze").click()
    page.get_by_label("causal (slower, needs a detector)").uncheck()  # the gap curve is enough here, and fast
    run_job(page, "analyze-progress", "Analyze")
    sync_api.expect(page.get_by_text("suggested S =").first).to_be_visible(timeout=JOB_TIMEOUT_MS)
    shot(page, "06-analyze")

    page.get_by_role("tab", name="Key steps").click()
    page.get_by_role("button", name="Use S from the analysis").click()
    sync_api.expect(page.locator("#keysteps-plot img")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    shot(page, "07-key-steps")
    page.get_by_role("button", name="Use this window in Unlearn").click()  # switches to Unlearn

    sync_api.expect(page.get_by_role("tab", name="Unlearn", selected=True)).to_be_visible()
    choose(page, "Concept to erase", "striped  (style)")
    page.get_by_text("Advanced settings").click()
    iterations = page.get_by_label("Iterations", exact=True).filter(visible=True).first
    iterations.fill("10")
    iterations.press("Tab")
    run_job(page, "unlearn-progress", "Start")
    sync_api.expect(page.get_by_text("last KSCU edit (current)")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    sync_api.expect(page.locator("#unlearn-loss img")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    shot(page, "08-unlearn")

    page.get_by_role("tab", name="Compare").click()
    page.get_by_label("Measure UA / IRA / CRA (needs a judge)").uncheck()
    run_job(page, "compare-progress", "Compare")
    for image in ("compare-before", "compare-after"):
        sync_api.expect(page.locator(f"#{image} img")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    sync_api.expect(page.locator("#compare-change table")).to_contain_text("SSIM (KSCU)")  # the image change, with no metrics
    sync_api.expect(page.locator("#compare-notes")).to_contain_text("were not measured (unticked)")
    shot(page, "09-compare")

    page.get_by_role("tab", name="Export").click()
    page.get_by_role("button", name="Save edit file").click()
    sync_api.expect(page.locator("#export-edit-file")).to_contain_text("kscu-striped-kscu", timeout=JOB_TIMEOUT_MS)
    shot(page, "10-export")


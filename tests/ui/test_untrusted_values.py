"""What runs carry (inputs, errors, keys, payloads) is shown as text, never run as HTML.

This module sorts after ``test_runs_page``: its runs stay out of the screenshot of the runs page.
"""

from __future__ import annotations

from playwright.sync_api import Page, expect

from pyworkflow.models import RunStatus
from tests.ui import ui_flows
from tests.ui.support import Client

XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def test_values_are_shown_as_text_never_as_html(signed_in: Page, client: Client) -> None:
    page = signed_in
    page.add_init_script("window.__xss = 0")
    failed = client.start(ui_flows.flaky, XSS, idempotency_key=f"key {XSS}")
    waiting = client.start(ui_flows.approval, "ui-xss-hook")
    client.wait(failed, RunStatus.FAILED)
    client.wait(waiting, RunStatus.SUSPENDED)
    client.resume_hook("ui-xss-hook", {"note": XSS})
    client.wait(waiting, RunStatus.COMPLETED)

    page.goto(f"/ui/runs?q={failed}")
    expect(page.get_by_test_id("run-row")).to_contain_text("key <img")
    page.goto(f"/ui/runs/{failed}")
    expect(page.get_by_test_id("run-error")).to_contain_text(f"card declined for {XSS} cents")
    expect(page.get_by_test_id("run-input")).to_contain_text("<script>")
    page.goto(f"/ui/runs/{waiting}")
    expect(page.get_by_test_id("run-result")).to_contain_text("<script>window.__xss=2</script>")
    expect(page.get_by_test_id("events")).to_contain_text("onerror")
    for path in (f"/ui/runs?q={failed}", f"/ui/runs/{failed}", f"/ui/runs/{waiting}"):
        page.goto(path)
        page.wait_for_load_state("load")
        assert page.evaluate("window.__xss") == 0, path
        assert page.locator("main img, main script").count() == 0, path


def test_a_hook_secret_is_never_shown(signed_in: Page, client: Client) -> None:
    page = signed_in
    run_id = client.start(ui_flows.signed_approval, "ui-signed-hook")
    client.wait(run_id, RunStatus.SUSPENDED)
    page.goto(f"/ui/runs/{run_id}")
    expect(page.get_by_test_id("hook-form")).to_have_count(1)
    expect(page.get_by_test_id("event-row").filter(has_text="hook_created")).to_have_count(1)
    assert ui_flows.HOOK_SECRET not in page.content()
    page.goto(f"/ui/runs?q={run_id}")
    expect(page.get_by_test_id("run-row")).to_have_count(1)
    assert ui_flows.HOOK_SECRET not in page.content()
    client.cancel(run_id)
    client.wait(run_id, RunStatus.CANCELLED)

"""The run page: error and traceback, the timeline's attempts, events, links, live updates."""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

from pyworkflow.models import EventType, RunStatus
from tests.ui import ui_flows
from tests.ui.support import Client, screenshot


def test_a_failed_run_shows_its_error_and_the_attempts(signed_in: Page, client: Client) -> None:
    page = signed_in
    run_id = client.start(ui_flows.flaky, 1999)
    client.wait(run_id, RunStatus.FAILED)
    events = client.events(run_id)
    started = [e for e in events if e.type == EventType.STEP_STARTED]
    retrying = [e for e in events if e.type == EventType.STEP_RETRYING]
    assert len(started) == 3 and len(retrying) == 2  # max_retries=2: three attempts

    page.goto(f"/ui/runs/{run_id}")
    expect(page.get_by_role("heading", name=re.compile(re.escape(run_id)))).to_be_visible()
    expect(page.get_by_test_id("run-status")).to_have_text(re.compile(r"^\s*failed\s*$"))
    expect(page.get_by_test_id("run-input")).to_contain_text("1999")
    error = page.get_by_test_id("run-error")
    expect(error).to_contain_text("ValueError")
    expect(error).to_contain_text("card declined for 1999 cents")
    expect(error.locator("pre")).to_contain_text("Traceback")
    expect(page.get_by_test_id("run-result")).to_have_count(0)

    # one bar per attempt of the failed step, the last one failed, each described for a reader
    timeline = page.get_by_test_id("timeline")
    attempts = timeline.locator('[data-testid="bar"][data-kind="step"][data-name="ui_charge_card"]')
    expect(attempts).to_have_count(len(started))
    for n in range(1, len(started) + 1):
        expect(attempts.and_(page.locator(f'[data-attempt="{n}"]'))).to_have_count(1)
    last = attempts.and_(page.locator(f'[data-attempt="{len(started)}"]'))
    expect(last).to_have_attribute("data-outcome", "failed")
    expect(last).to_have_attribute(
        "aria-label", re.compile(rf"ui_charge_card.*\b{len(started)}\b.*failed")
    )
    for bar in attempts.all():
        assert bar.get_attribute("data-outcome") in ("failed", "retrying")
        assert (bar.get_attribute("aria-label") or "").strip()
    expect(timeline.locator('[data-testid="bar"][data-kind="retry-wait"]')).to_have_count(
        len(retrying)
    )

    # the raw event log, one row per recorded event
    rows = page.get_by_test_id("events").get_by_test_id("event-row")
    expect(rows).to_have_count(len(events))
    expect(rows.filter(has_text=EventType.STEP_RETRYING.value)).to_have_count(len(retrying))
    # the picture in docs/ui.md: from the status to the timeline and the first events
    page.get_by_test_id("run-status").evaluate(
        "e => window.scrollTo(0, e.getBoundingClientRect().top + window.scrollY - 48)"
    )
    screenshot(page, "ui-run.png")


def test_parent_and_child_link_each_other(signed_in: Page, client: Client) -> None:
    page = signed_in
    parent = client.start(ui_flows.parent, 20)
    client.wait(parent, RunStatus.COMPLETED)
    (child,) = client.list(parent=parent).runs
    page.goto(f"/ui/runs/{parent}")
    expect(page.get_by_test_id("run-result")).to_contain_text("41")
    expect(page.get_by_test_id("timeline").locator('[data-kind="child"]')).to_have_count(1)
    page.get_by_test_id("child-link").click()
    expect(page).to_have_url(re.compile(rf"/ui/runs/{child.run_id}$"))
    expect(page.get_by_test_id("run-result")).to_contain_text("40")
    page.get_by_test_id("parent-link").click()
    expect(page).to_have_url(re.compile(rf"/ui/runs/{parent}$"))


def test_a_running_run_updates_live(signed_in: Page, client: Client) -> None:
    page = signed_in
    gates = str(client.served.gates / "live")
    (client.served.gates / "live").mkdir()
    run_id = client.start(ui_flows.gated, gates)

    page.goto(f"/ui/runs/{run_id}")
    url = page.url
    page.evaluate("window.__not_reloaded = true")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    timeline = page.get_by_test_id("timeline")
    status = page.get_by_test_id("run-status")
    rows = page.get_by_test_id("events").get_by_test_id("event-row")

    def bar(name: str) -> Locator:
        return timeline.locator(f'[data-testid="bar"][data-kind="step"][data-name="{name}"]')

    # each step waits for its gate: open one gate at a time and watch the page follow
    for done, name in enumerate(ui_flows.GATED_STEPS):
        expect(bar(name)).to_have_attribute("data-outcome", "running")
        for later in ui_flows.GATED_STEPS[done + 1 :]:
            expect(bar(later)).to_have_count(0)
        (client.served.gates / "live" / name).touch()
        expect(bar(name)).to_have_attribute("data-outcome", "completed")

    expect(status).to_have_text(re.compile(r"completed"))
    client.wait(run_id, RunStatus.COMPLETED)
    expect(rows).to_have_count(len(client.events(run_id)))
    expect(rows.filter(has_text=EventType.WORKFLOW_COMPLETED.value)).to_have_count(1)
    assert page.url == url
    assert navigations == []
    assert page.evaluate("window.__not_reloaded") is True
    assert client.result(run_id) == list(ui_flows.GATED_STEPS)

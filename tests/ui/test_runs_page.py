"""The runs page: rows of real runs, filter by status and workflow, search, counts, auto-refresh."""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

from pyworkflow.models import RunStatus
from tests.ui import ui_flows
from tests.ui.support import Client, screenshot

#: Rows on one page of the runs table.
PAGE = 50


def choose(field: Locator, value: str) -> None:
    """Fill a text input or pick the option of a select: the contract names the label only."""
    if field.evaluate("e => e.tagName") == "SELECT":
        field.select_option(value)
    else:
        field.fill(value)


def number(n: int) -> re.Pattern[str]:
    """Text showing the number ``n`` (not as part of a longer number)."""
    return re.compile(rf"(^|\D){n}(\D|$)")


def test_list_filter_and_search_runs(signed_in: Page, client: Client) -> None:
    page = signed_in
    failed = [client.start(ui_flows.flaky, cents) for cents in (1999, 2999)]
    done = client.start(ui_flows.parent, 20)
    waiting = client.start(ui_flows.approval, "runs-page-approval", idempotency_key="order-4711")
    for run_id in failed:
        client.wait(run_id, RunStatus.FAILED)
    client.wait(done, RunStatus.COMPLETED)
    client.wait(waiting, RunStatus.SUSPENDED)

    page.goto("/ui/runs")
    table = page.get_by_test_id("runs-table")
    for run_id in [*failed, done, waiting]:
        row = table.locator(f'[data-testid="run-row"][data-run-id="{run_id}"]')
        expect(row).to_have_count(1)
        expect(row.locator(f'a[href="/ui/runs/{run_id}"]')).to_have_count(1)
    expect(table.locator(f'[data-run-id="{failed[0]}"] [data-testid="status"]')).to_have_text(
        "failed"
    )
    expect(table.locator(f'[data-run-id="{waiting}"] [data-testid="status"]')).to_have_text(
        "suspended"
    )
    screenshot(page, "ui-runs.png")

    # filter by status and workflow: the form's GET lands on a URL that says so
    page.get_by_label("Status").select_option("failed")
    choose(page.get_by_label("Workflow"), "ui_tests.flaky")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"status=failed"))
    expect(page).to_have_url(re.compile(r"workflow=ui_tests.flaky"))
    rows = table.get_by_test_id("run-row")
    expect(rows.first).to_be_visible()
    expect(table.get_by_test_id("status")).to_have_text(["failed"] * rows.count())
    for run_id in failed:
        expect(table.locator(f'[data-run-id="{run_id}"]')).to_have_count(1)
    for run_id in (done, waiting):
        expect(table.locator(f'[data-run-id="{run_id}"]')).to_have_count(0)
    # the counts are over the filtered workflow, as the storage has them
    flaky_failed = client.list(workflow="ui_tests.flaky", status=RunStatus.FAILED)
    expect(page.get_by_test_id("count-failed")).to_have_text(number(len(flaky_failed.runs)))

    # search by run id, then by idempotency key
    page.goto("/ui/runs")
    search = page.get_by_label("Search run id or idempotency key")
    search.fill(done)
    page.get_by_role("button", name="Filter").click()
    expect(table.get_by_test_id("run-row")).to_have_count(1)
    expect(table.get_by_test_id("run-row")).to_have_attribute("data-run-id", done)

    page.get_by_label("Search run id or idempotency key").fill("order-4711")
    page.get_by_role("button", name="Filter").click()
    expect(table.get_by_test_id("run-row")).to_have_count(1)
    expect(table.get_by_test_id("run-row")).to_have_attribute("data-run-id", waiting)

    client.resume_hook("runs-page-approval", "yes")
    client.wait(waiting, RunStatus.COMPLETED)


def test_the_table_refreshes_itself(signed_in: Page, client: Client) -> None:
    page = signed_in
    page.goto("/ui/runs?workflow=ui_tests.sleepy")
    page.evaluate("window.__not_reloaded = true")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    run_id = client.start(ui_flows.sleepy, "refresh")
    row = page.locator(f'[data-testid="run-row"][data-run-id="{run_id}"]')
    expect(row).to_have_count(1)
    expect(row.get_by_test_id("status")).to_have_text("suspended")
    client.cancel(run_id)
    expect(row.get_by_test_id("status")).to_have_text("cancelled")
    # nothing changes any more: the next poll is answered 304 (the ETag of the fragment)
    with page.expect_response(
        lambda r: r.request.headers.get("x-fragment") == "runs-table" and r.status == 304
    ) as unchanged:
        pass
    assert unchanged.value.request.headers.get("if-none-match")
    assert page.evaluate("window.__not_reloaded") is True
    assert navigations == []


def test_paging(signed_in: Page, client: Client) -> None:
    page = signed_in
    started = {client.start(ui_flows.filler, n) for n in range(PAGE + 5)}
    page.goto("/ui/runs?workflow=ui_tests.filler")
    rows = page.get_by_test_id("runs-table").get_by_test_id("run-row")
    expect(rows).to_have_count(PAGE)
    first = {row.get_attribute("data-run-id") for row in rows.all()}
    page.locator('a[rel="next"]').click()
    expect(page).to_have_url(re.compile(r"cursor="))
    expect(page).to_have_url(re.compile(r"workflow=ui_tests.filler"))
    expect(rows).to_have_count(5)
    second = {row.get_attribute("data-run-id") for row in rows.all()}
    expect(page.locator('a[rel="next"]')).to_have_count(0)
    assert first | second == started and not first & second
    expect(page.get_by_test_id("count-all")).to_have_text(number(PAGE + 5))

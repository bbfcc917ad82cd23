"""Run page actions: cancel, resume a hook (JSON, a schema's form), retry, check against code."""

from __future__ import annotations

import re

from playwright.sync_api import Dialog, Page, Request, expect

from pyworkflow.models import EventType, RunStatus
from tests.ui import ui_flows
from tests.ui.support import Client


def accept_next_confirm(page: Page, seen: list[str]) -> None:
    """Accept the next native ``confirm()``, keeping its message."""

    def on_dialog(dialog: Dialog) -> None:
        seen.append(f"{dialog.type}: {dialog.message}")
        dialog.accept()

    page.once("dialog", on_dialog)


def test_cancel_a_run_after_confirming(signed_in: Page, client: Client) -> None:
    page = signed_in
    run_id = client.start(ui_flows.sleepy, "cancel me")
    client.wait(run_id, RunStatus.SUSPENDED)
    page.goto(f"/ui/runs/{run_id}")
    expect(page.get_by_test_id("timeline").locator('[data-kind="sleep"]')).to_have_count(1)
    cancel = page.get_by_role("button", name="Cancel run")

    # dismissing the confirmation sends nothing
    posts: list[str] = []

    def on_request(request: Request) -> None:
        if request.method == "POST":
            posts.append(request.url)

    page.on("request", on_request)
    dialogs: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.type)
        dialog.dismiss()

    page.once("dialog", dismiss)
    cancel.click()
    expect(cancel).to_be_visible()
    assert dialogs == ["confirm"]
    assert posts == []
    assert client.get(run_id).status == RunStatus.SUSPENDED

    accept_next_confirm(page, dialogs)
    cancel.click()
    expect(page.get_by_test_id("flash")).to_be_visible()
    expect(page).to_have_url(re.compile(rf"/ui/runs/{run_id}$"))
    assert posts == [f"{client.served.url}/ui/runs/{run_id}/cancel"]
    expect(page.get_by_test_id("run-status")).to_have_text(re.compile(r"cancelled"))
    client.wait(run_id, RunStatus.CANCELLED)
    types = [e.type for e in client.events(run_id)]
    assert EventType.CANCEL_REQUESTED in types and EventType.WORKFLOW_CANCELLED in types
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)


def test_resume_a_hook_with_a_json_payload(signed_in: Page, client: Client) -> None:
    page = signed_in
    run_id = client.start(ui_flows.approval, "ui-approval-json")
    client.wait(run_id, RunStatus.SUSPENDED)
    (created,) = [e for e in client.events(run_id) if e.type == EventType.HOOK_CREATED]
    page.goto(f"/ui/runs/{run_id}")
    form = page.get_by_test_id("hook-form")
    expect(form).to_have_count(1)
    expect(form).to_have_attribute("data-hook", created.correlation_id)
    expect(page.get_by_test_id("timeline").locator('[data-kind="hook"]')).to_have_count(1)
    dialogs: list[str] = []

    # bad JSON: an error message, nothing delivered, the run still waits
    form.get_by_label("Payload (JSON)").fill("{not json")
    accept_next_confirm(page, dialogs)
    form.get_by_role("button", name="Resume hook").click()
    expect(page.get_by_test_id("flash")).to_contain_text(re.compile("JSON", re.I))
    assert [e for e in client.events(run_id) if e.type == EventType.HOOK_RECEIVED] == []
    assert client.get(run_id).status == RunStatus.SUSPENDED

    form = page.get_by_test_id("hook-form")
    form.get_by_label("Payload (JSON)").fill('{"by": "ann", "lines": [1, 2]}')
    accept_next_confirm(page, dialogs)
    form.get_by_role("button", name="Resume hook").click()
    expect(page.get_by_test_id("flash")).to_be_visible()
    expect(page.get_by_test_id("run-status")).to_have_text(re.compile(r"completed"))
    assert len(dialogs) == 2 and all(d.startswith("confirm") for d in dialogs)
    client.wait(run_id, RunStatus.COMPLETED)
    assert client.result(run_id) == {"approved": {"by": "ann", "lines": [1, 2]}}
    page.reload()
    expect(page.get_by_test_id("hook-form")).to_have_count(0)
    expect(page.get_by_test_id("run-result")).to_contain_text("ann")


def test_resume_a_hook_through_its_schema_form(signed_in: Page, client: Client) -> None:
    page = signed_in
    run_id = client.start(ui_flows.typed_approval, "ui-approval-typed")
    client.wait(run_id, RunStatus.SUSPENDED)
    page.goto(f"/ui/runs/{run_id}")
    form = page.get_by_test_id("hook-form")
    expect(form).to_have_count(1)
    expect(form).to_contain_text("Decision")  # the schema it was built from
    expect(form.get_by_label("Payload (JSON)")).to_have_count(0)
    form.get_by_label(re.compile("approver", re.I)).fill("bob")
    form.get_by_label(re.compile("amount", re.I)).fill("120")
    accept_next_confirm(page, [])
    form.get_by_role("button", name="Resume hook").click()
    expect(page.get_by_test_id("run-status")).to_have_text(re.compile(r"completed"))
    client.wait(run_id, RunStatus.COMPLETED)
    assert client.result(run_id) == "bob approved 120"


def test_retry_and_check_a_run_against_the_code(signed_in: Page, client: Client) -> None:
    page = signed_in
    run_id = client.start(ui_flows.flaky, 5)
    client.wait(run_id, RunStatus.FAILED)
    before = len(client.events(run_id))
    page.goto(f"/ui/runs/{run_id}")
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)

    accept_next_confirm(page, [])
    page.get_by_role("button", name="Check against code").click()
    expect(page.get_by_test_id("flash")).to_contain_text(re.compile(r"\bok\b"))
    expect(page.get_by_test_id("flash")).not_to_contain_text(re.compile("deterministic at", re.I))

    accept_next_confirm(page, [])
    page.get_by_role("button", name="Retry run").click()
    expect(page.get_by_test_id("flash")).to_be_visible()
    # the retried run fails again (its step always raises): more attempts on the same page
    expect(page.get_by_test_id("event-row").filter(has_text="workflow_retried")).to_have_count(1)
    expect(page.get_by_test_id("run-status")).to_have_text(re.compile(r"failed"))
    client.wait(run_id, RunStatus.FAILED)
    assert len(client.events(run_id)) > before

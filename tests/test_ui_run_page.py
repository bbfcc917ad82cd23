"""The run page (``/ui/runs/{run_id}``) through Starlette's TestClient, on SQLite."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from starlette.testclient import TestClient

import pyworkflow
from pyworkflow import EventType, RunStatus, get_events, get_result, get_run
from pyworkflow.server import create_app
from pyworkflow.ui import auth
from pyworkflow.ui.app import FLASH_COOKIE
from pyworkflow.ui.hook_form import FormError, payload_from_form, schema_fields
from tests import ui_run_flows as flows
from tests.conftest import FAST

TOKEN = "run-page-token-0123456789abcdef"


def wait_until(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def wait_status(run_id: str, status: RunStatus) -> None:
    wait_until(lambda: get_run(run_id).status == status)


def hook_cid(run_id: str) -> str:
    wait_until(lambda: any(e.type == EventType.HOOK_CREATED for e in get_events(run_id)))
    (created,) = [e for e in get_events(run_id) if e.type == EventType.HOOK_CREATED]
    assert created.correlation_id is not None
    return created.correlation_id


def by_testid(page: str, name: str) -> str:
    """The text inside the first element with ``data-testid=name`` (tags stripped)."""
    match = re.search(rf'<(\w+)[^>]*data-testid="{name}"[^>]*>(.*?)</\1>', page, re.S)
    assert match, f"no data-testid={name!r}"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(2)))


def by_testid_html(page: str, name: str) -> str:
    """The markup inside the first element with ``data-testid=name``."""
    match = re.search(rf'<(\w+)[^>]*data-testid="{name}"[^>]*>(.*?)</\1>', page, re.S)
    assert match, f"no data-testid={name!r}"
    return match.group(2)


def bars(page: str) -> list[dict[str, str]]:
    found = []
    for tag in re.findall(r'<span data-testid="bar"[^>]*>', page):
        found.append(
            {k: html.unescape(v) for k, v in re.findall(r'(data-[\w-]+|aria-label)="([^"]*)"', tag)}
        )
    return found


def flash_of(response: httpx.Response) -> str:
    return unquote(response.cookies.get(FLASH_COOKIE) or "")


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[TestClient]:
    pyworkflow.configure(storage=f"sqlite:///{tmp_path / 'pw.db'}", **FAST)
    with TestClient(create_app(), follow_redirects=False) as client:
        yield client


CSRF = {"csrf": auth.csrf_value(None)}


def test_a_completed_run(ui: TestClient) -> None:
    run_id = pyworkflow.start(flows.greet, "ana")
    get_result(run_id, timeout=20)
    page = ui.get(f"/ui/runs/{run_id}")
    assert page.status_code == 200
    text = page.text
    assert f'<code class="mono">{run_id}</code>' in text
    assert by_testid(text, "run-status") == "completed"
    assert json.loads(by_testid(text, "run-result")) == {"hello": "ana", "items": [1, 2, 3]}
    assert by_testid(text, "run-result").startswith('{\n  "hello"')  # pretty-printed
    assert json.loads(by_testid(text, "run-input")) == {"args": ["ana"], "kwargs": {}}
    assert 'data-testid="run-error"' not in text
    assert text.count('data-testid="event-row"') == len(get_events(run_id))
    # an ended run: no live region polling, no cancel or retry
    assert 'data-live="run-live"' not in text and "Cancel run" not in text
    assert "Retry run" not in text and "Check against code" in text
    assert 'data-testid="live"' in text


def test_a_failed_run_shows_its_decoded_error_and_escapes_everything(ui: TestClient) -> None:
    run_id = pyworkflow.start(flows.fails, flows.HOSTILE)
    wait_status(run_id, RunStatus.FAILED)
    text = ui.get(f"/ui/runs/{run_id}").text
    assert "<script>" not in text  # the hostile input is text, never markup
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;amp;" in text
    assert json.loads(by_testid(text, "run-input"))["args"] == [flows.HOSTILE]
    error = by_testid(text, "run-error")
    assert f"ValueError: broken: {flows.HOSTILE}" in error
    trace = re.search(r'data-testid="run-error".*?<pre[^>]*>(.*?)</pre>', text, re.S)
    assert trace is not None
    assert "Traceback (most recent call last)" in html.unescape(trace.group(1))
    assert "ui_run_broken" in html.unescape(trace.group(1))
    steps = [b for b in bars(text) if b["data-kind"] == "step"]
    assert [(b["data-attempt"], b["data-outcome"]) for b in steps] == [
        ("1", "retrying"),
        ("2", "failed"),
    ]
    assert all(b["data-name"] == "ui_run_broken" and b["aria-label"] for b in steps)
    assert [b["data-kind"] for b in bars(text)].count("retry-wait") == 1
    # retry offered, confirmed first, with the csrf field
    form = re.search(r'<form[^>]*action="/ui/runs/[^"]*/retry"[^>]*>.*?</form>', text, re.S)
    assert form is not None and "data-confirm=" in form.group(0)
    assert f'name="csrf" value="{CSRF["csrf"]}"' in form.group(0)
    assert "Cancel run" not in text


def test_a_waiting_run_is_live_and_offers_its_hook(ui: TestClient) -> None:
    run_id = pyworkflow.start(flows.wait, "page:wait")
    cid = hook_cid(run_id)
    wait_status(run_id, RunStatus.SUSPENDED)
    text = ui.get(f"/ui/runs/{run_id}").text
    assert by_testid(text, "run-status") == "suspended"
    assert 'data-live="run-live"' in text and 'data-live="run-actions"' in text
    assert re.search(rf'data-testid="hook-form" data-hook="{cid}"', text)
    assert re.search(r'<label for="([^"]+)">Payload \(JSON\)</label>\s*<textarea id="\1"', text)
    (hook,) = [b for b in bars(text) if b["data-kind"] == "hook"]
    assert hook["data-outcome"] == "running"
    assert "Cancel run" in text and "Retry run" not in text
    # every action is a POST form with the csrf field, confirmed first, reachable by keyboard
    forms = re.findall(r"<form[^>]*>.*?</form>", text, re.S)
    assert len(forms) == 3  # cancel, check against code, the hook
    for form in forms:
        assert 'method="post"' in form and "data-confirm=" in form
        assert f'name="csrf" value="{CSRF["csrf"]}"' in form
        assert re.search(r'<button type="submit"[^>]*>', form)
    assert ui.head(f"/ui/runs/{run_id}").status_code == 200


def test_a_running_step_is_a_running_bar(ui: TestClient, tmp_path: Path) -> None:
    run_id = pyworkflow.start(flows.everything, "page:running")
    wait_until(lambda: any(e.type == EventType.STEP_RETRYING for e in get_events(run_id)))
    text = ui.get(f"/ui/runs/{run_id}").text
    assert by_testid(text, "run-status") in ("running", "suspended", "pending")
    wait = [b for b in bars(text) if b["data-kind"] == "retry-wait"]
    assert wait and wait[-1]["data-outcome"] == "running"
    pyworkflow.cancel(run_id)
    wait_status(run_id, RunStatus.CANCELLED)


def test_the_live_fragment_has_an_etag_and_answers_304(ui: TestClient) -> None:
    run_id = pyworkflow.start(flows.wait, "page:etag")
    cid = hook_cid(run_id)
    wait_status(run_id, RunStatus.SUSPENDED)
    live = {"x-fragment": "run-live"}
    first = ui.get(f"/ui/runs/{run_id}", headers=live)
    assert first.status_code == 200
    assert "<html" not in first.text and 'data-testid="run-status"' in first.text
    assert "X-Live-Final" not in first.headers
    etag = first.headers["etag"]
    again = ui.get(f"/ui/runs/{run_id}", headers={**live, "if-none-match": etag})
    # unchanged: 304 (or, across a redraw tick of a live run, a fresh 200)
    assert again.status_code in (200, 304)
    if again.status_code == 304:
        assert again.content == b""
    actions = ui.get(f"/ui/runs/{run_id}", headers={"x-fragment": "run-actions"})
    assert actions.status_code == 200 and 'data-testid="hook-form"' in actions.text
    same = ui.get(
        f"/ui/runs/{run_id}",
        headers={"x-fragment": "run-actions", "if-none-match": actions.headers["etag"]},
    )
    assert same.status_code == 304

    pyworkflow.resume_hook("page:etag", {"fine": True})
    wait_status(run_id, RunStatus.COMPLETED)
    ended = ui.get(f"/ui/runs/{run_id}", headers={**live, "if-none-match": etag})
    assert ended.status_code == 200 and ended.headers["x-live-final"] == "1"
    assert by_testid(ended.text, "run-status") == "completed"
    assert ended.headers["etag"] != etag
    ended_again = ui.get(
        f"/ui/runs/{run_id}", headers={**live, "if-none-match": ended.headers["etag"]}
    )
    assert ended_again.status_code == 304  # an ended run no longer changes
    gone = ui.get(f"/ui/runs/{run_id}", headers={"x-fragment": "run-actions"})
    assert cid and 'data-testid="hook-form"' not in gone.text
    assert ui.get(f"/ui/runs/{run_id}", headers={"x-fragment": "nope"}).status_code == 400


def test_parent_child_and_continuation_links(ui: TestClient) -> None:
    parent = pyworkflow.start(flows.parent, 5)
    assert get_result(parent, timeout=20) == 11
    (child,) = pyworkflow.list_runs(parent=parent).runs
    text = ui.get(f"/ui/runs/{parent}").text
    assert re.search(rf'data-testid="child-link"[^>]*href="/ui/runs/{child.run_id}"', text)
    assert 'data-testid="parent-link"' not in text
    (bar,) = [b for b in bars(text) if b["data-kind"] == "child"]
    assert (bar["data-name"], bar["data-outcome"]) == ("ui_run.child", "completed")
    text = ui.get(f"/ui/runs/{child.run_id}").text
    assert re.search(rf'data-testid="parent-link"[^>]*href="/ui/runs/{parent}"', text)

    first = pyworkflow.start(flows.chain, 1)
    wait_until(lambda: get_run(first).continued_to is not None)
    second = get_run(first).continued_to
    assert second is not None and get_result(second, timeout=20) == 0
    text = ui.get(f"/ui/runs/{first}").text
    assert by_testid(text, "run-status") == "continued"
    assert re.search(rf'data-testid="continued-link"[^>]*href="/ui/runs/{second}"', text)
    text = ui.get(f"/ui/runs/{second}").text
    assert re.search(rf'data-testid="continued-link"[^>]*href="/ui/runs/{first}"', text)


def test_unknown_runs_are_404_and_escaped(ui: TestClient) -> None:
    page = ui.get("/ui/runs/%3Cb%3Enope%22'")
    assert page.status_code == 404
    assert "&lt;b&gt;nope&#34;&#39;" in by_testid_html(page.text, "run-missing")
    assert "<b>nope" not in page.text
    assert ui.get("/ui/runs/nope", headers={"x-fragment": "run-live"}).status_code == 404
    assert ui.post("/ui/runs/nope/cancel", data=CSRF).status_code == 404
    assert ui.post("/ui/runs/nope/hooks/1/resume", data=CSRF).status_code == 404


def test_actions_need_the_csrf_field(ui: TestClient) -> None:
    run_id = pyworkflow.start(flows.sleepy, "csrf")
    wait_status(run_id, RunStatus.SUSPENDED)
    for action in ("cancel", "retry", "replay", "hooks/1/resume"):
        assert ui.post(f"/ui/runs/{run_id}/{action}").status_code in (403, 415)
        assert ui.post(f"/ui/runs/{run_id}/{action}", data={"csrf": "x"}).status_code == 403
    assert get_run(run_id).status == RunStatus.SUSPENDED
    assert EventType.CANCEL_REQUESTED not in [e.type for e in get_events(run_id)]


def test_cancel_from_the_page(ui: TestClient) -> None:
    run_id = pyworkflow.start(flows.sleepy, "cancel")
    wait_status(run_id, RunStatus.SUSPENDED)
    response = ui.post(f"/ui/runs/{run_id}/cancel", data=CSRF)
    assert response.status_code == 303
    assert response.headers["location"] == f"/ui/runs/{run_id}"
    assert flash_of(response).startswith("ok:Cancellation requested")
    wait_status(run_id, RunStatus.CANCELLED)
    page = ui.get(f"/ui/runs/{run_id}").text
    assert "Cancellation requested" in by_testid(page, "flash")
    assert "Cancel run" not in page
    again = ui.post(f"/ui/runs/{run_id}/cancel", data=CSRF)
    assert flash_of(again).startswith("error:The run had already ended")


def test_retry_from_the_page(ui: TestClient) -> None:
    run_id = pyworkflow.start(flows.fatal, "retry")
    wait_status(run_id, RunStatus.FAILED)
    response = ui.post(f"/ui/runs/{run_id}/retry", data=CSRF)
    assert response.status_code == 303
    assert flash_of(response).startswith("ok:Run retried")
    assert EventType.WORKFLOW_RETRIED in [e.type for e in get_events(run_id)]
    wait_until(lambda: [e.type for e in get_events(run_id)].count(EventType.WORKFLOW_FAILED) == 2)
    done = pyworkflow.start(flows.greet, "no retry")
    get_result(done, timeout=20)
    refused = ui.post(f"/ui/runs/{done}/retry", data=CSRF)
    assert refused.status_code == 303
    assert "only failed runs can be retried" in flash_of(refused)
    assert flash_of(refused).startswith("error:")


def test_check_against_code_from_the_page(ui: TestClient) -> None:
    flows.drift["v2"] = False
    run_id = pyworkflow.start(flows.drifting, 4)
    assert get_result(run_id, timeout=20) == 8
    ok = ui.post(f"/ui/runs/{run_id}/replay", data=CSRF)
    assert ok.status_code == 303
    assert flash_of(ok).startswith("ok:Check against code: ok")
    page = ui.get(f"/ui/runs/{run_id}").text
    assert "Check against code: ok" in by_testid(page, "flash")
    flows.drift["v2"] = True
    try:
        diverged = ui.post(f"/ui/runs/{run_id}/replay", data=CSRF)
    finally:
        flows.drift["v2"] = False
    assert flash_of(diverged).startswith("error:Check against code: NOT deterministic")


def test_resume_a_hook_with_json_and_refuse_bad_json(ui: TestClient) -> None:
    run_id = pyworkflow.start(flows.wait, "page:json")
    cid = hook_cid(run_id)
    url = f"/ui/runs/{run_id}/hooks/{cid}/resume"
    bad = ui.post(url, data={**CSRF, "payload": "{not json"})
    assert bad.status_code == 303
    assert flash_of(bad).startswith("error:Payload (JSON): not valid JSON")
    page = ui.get(f"/ui/runs/{run_id}").text
    assert "not valid JSON" in by_testid(page, "flash") and 'class="flash flash-error"' in page
    assert not [e for e in get_events(run_id) if e.type == EventType.HOOK_RECEIVED]
    assert get_run(run_id).status == RunStatus.SUSPENDED
    assert ui.get(f"/ui/runs/{run_id}").status_code == 200  # the flash is gone, the page fine
    unknown = ui.post(f"/ui/runs/{run_id}/hooks/77/resume", data={**CSRF, "payload": "1"})
    assert "has no hook '77'" in flash_of(unknown)

    good = ui.post(url, data={**CSRF, "payload": json.dumps({"by": flows.HOSTILE})})
    assert flash_of(good).startswith(f"ok:Hook {cid} resumed")
    assert get_result(run_id, timeout=20) == {"got": {"by": flows.HOSTILE}}
    text = ui.get(f"/ui/runs/{run_id}").text
    assert "<script>" not in text and 'data-testid="hook-form"' not in text
    assert json.loads(by_testid(text, "run-result")) == {"got": {"by": flows.HOSTILE}}
    late = ui.post(url, data={**CSRF, "payload": "2"})
    assert "no longer live" in flash_of(late)


def test_resume_a_hook_through_its_schema_form(ui: TestClient) -> None:
    run_id = pyworkflow.start(flows.typed, "page:typed")
    cid = hook_cid(run_id)
    text = ui.get(f"/ui/runs/{run_id}").text
    form = re.search(r'<form class="hook-form".*?</form>', text, re.S)
    assert form is not None
    labels = {
        html.unescape(re.sub(r"<[^>]+>", "", label)).split(" (")[0].strip(): target
        for target, label in re.findall(r'<label for="([^"]+)">(.*?)</label>', form.group(0), re.S)
    }
    assert set(labels) == {"approver", "amount", "urgent", "ratio", "notes"}
    assert 'name="field.amount" type="number" step="1"' in form.group(0)
    assert 'type="checkbox" id="' + labels["urgent"] + '" name="field.urgent"' in form.group(0)
    assert "Payload (JSON)" not in form.group(0)
    url = f"/ui/runs/{run_id}/hooks/{cid}/resume"
    bad = ui.post(url, data={**CSRF, "field.approver": "bob", "field.amount": "12.5"})
    assert flash_of(bad).startswith("error:amount: enter a whole number")
    assert not [e for e in get_events(run_id) if e.type == EventType.HOOK_RECEIVED]
    good = ui.post(
        url,
        data={
            **CSRF,
            "field.approver": "bob",
            "field.amount": "120",
            "field.urgent": "true",
            "field.ratio": "",
            "field.notes": '["a", "b"]',
        },
    )
    assert flash_of(good).startswith("ok:"), flash_of(good)
    assert get_result(run_id, timeout=20) == {
        "approver": "bob",
        "amount": 120,
        "urgent": True,
        "ratio": 1.0,
        "notes": ["a", "b"],
    }


def test_schema_forms_turn_inputs_into_payloads() -> None:
    fields = schema_fields("tests.ui_run_flows:Decision")
    assert fields is not None
    assert [(f.name, f.kind, f.required) for f in fields] == [
        ("approver", "text", True),
        ("amount", "int", True),
        ("urgent", "bool", False),
        ("ratio", "float", False),
        ("notes", "json", False),
    ]
    assert payload_from_form({"field.approver": "", "field.amount": " 3 "}, fields) == {
        "approver": "",
        "amount": 3,
        "urgent": False,
    }
    with pytest.raises(FormError, match="amount: required"):
        payload_from_form({"field.approver": "x"}, fields)
    with pytest.raises(FormError, match="ratio: enter a finite number"):
        payload_from_form({"field.amount": "1", "field.ratio": "nan"}, fields)
    with pytest.raises(FormError, match="notes: not valid JSON"):
        payload_from_form({"field.amount": "1", "field.notes": "[1,"}, fields)
    assert schema_fields(None) is None
    assert schema_fields("list[str]") is None  # not an attrs class: the JSON textarea
    assert schema_fields("no.such.module:Thing") is None
    assert payload_from_form({"payload": " "}, None) is None


def test_a_stored_lone_surrogate_does_not_break_the_page(ui: TestClient) -> None:
    run_id = pyworkflow.start(flows.greet, "\ud800")
    get_result(run_id, timeout=20)
    page = ui.get(f"/ui/runs/{run_id}")
    assert page.status_code == 200
    assert "\ufffd" in page.text


def test_the_page_and_its_actions_are_behind_the_token(tmp_path: Path) -> None:
    pyworkflow.configure(storage=f"sqlite:///{tmp_path / 'pw.db'}", **FAST)
    run_id = pyworkflow.start(flows.sleepy, "token")
    wait_status(run_id, RunStatus.SUSPENDED)
    with TestClient(create_app(api_token=TOKEN), follow_redirects=False) as client:
        page = client.get(f"/ui/runs/{run_id}")
        assert page.status_code == 303
        assert page.headers["location"].startswith("/ui/login?next=")
        token_csrf = {"csrf": auth.csrf_value(TOKEN)}
        assert client.post(f"/ui/runs/{run_id}/cancel", data=token_csrf).status_code == 403
        assert get_run(run_id).status == RunStatus.SUSPENDED
        client.cookies.set(auth.COOKIE_NAME, auth.session_value(TOKEN), path="/ui")
        page = client.get(f"/ui/runs/{run_id}")
        assert page.status_code == 200 and TOKEN not in page.text
        assert client.post(f"/ui/runs/{run_id}/cancel", data=CSRF).status_code == 403
        done = client.post(f"/ui/runs/{run_id}/cancel", data=token_csrf)
        assert done.status_code == 303
        wait_status(run_id, RunStatus.CANCELLED)

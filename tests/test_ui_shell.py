"""The UI's shell and list pages through Starlette's TestClient (no browser).

Auth (cookie, csrf, redirects, 401/403, the token never shown), the runs page
(filters, search, paging, counts, the live fragment's ETag/304, 400 on bad
queries, escaping), the workflows/schedules/queues pages, and the package data
(templates and static files in the installed package and in the built wheel).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import importlib.util
import os
import re
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

import pyworkflow
from pyworkflow import step, workflow
from pyworkflow.models import Run, RunStatus
from pyworkflow.runtime import Runtime, get_runtime
from pyworkflow.server import create_app
from pyworkflow.ui import auth, queries

TOKEN = "ui-shell-t0ken-0123456789"
SESSION = hmac.new(TOKEN.encode(), b"pyworkflow-ui-session", hashlib.sha256).hexdigest()
CSRF = hmac.new(TOKEN.encode(), b"pyworkflow-ui-csrf", hashlib.sha256).hexdigest()
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
HOSTILE_NAME = '<script>alert("wf")</script>'
HOSTILE_KEY = '"><img src=x onerror=alert(1)>'


@step()
async def ui_shell_noop() -> None:
    return None


@workflow(name="ui_shell.registered")
async def registered(x: int) -> int:
    await ui_shell_noop()
    return x


# ----- helpers -----


async def _put(runtime: Runtime, run: Run) -> None:
    await runtime.storage.create_run(run, [])


def put_run(
    run_id: str,
    *,
    workflow_name: str = "ui_shell.registered",
    status: RunStatus = RunStatus.COMPLETED,
    key: str | None = None,
    minutes: int = 0,
    error_message: str | None = None,
) -> str:
    """Store a run row as it is (no worker runs it): the list pages only read rows."""
    at = T0 + timedelta(minutes=minutes)
    run = Run(
        run_id=run_id,
        workflow_name=workflow_name,
        status=status,
        input="{}",
        serializer="json",
        created_at=at,
        updated_at=at,
        idempotency_key=key,
        error_message=error_message,
    )
    runtime = get_runtime()
    runtime.call(_put, runtime, run)
    return run_id


def row_ids(text: str) -> list[str]:
    return re.findall(r'data-testid="run-row" data-run-id="([^"]+)"', text)


def count_text(text: str, status: str) -> str:
    found = re.search(rf'data-testid="count-{status}"[^>]*>(.*?)</a>', text, flags=re.DOTALL)
    assert found, f"no count-{status}"
    return re.sub(r"<[^>]+>", " ", found.group(1)).split()[-1]


def csrf_of(text: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', text)
    assert found, "no csrf input"
    return found.group(1)


def client_for(api_token: str | None) -> TestClient:
    return TestClient(create_app(api_token=api_token), follow_redirects=False)


@pytest.fixture
def open_ui() -> Iterator[TestClient]:
    """A UI without an API token on memory storage (no worker: rows are put by the tests)."""
    pyworkflow.configure(storage="memory://", embedded_worker=False)
    with client_for(None) as client:
        yield client


@pytest.fixture
def locked_ui() -> Iterator[TestClient]:
    """A UI behind ``TOKEN``, not signed in."""
    pyworkflow.configure(storage="memory://", embedded_worker=False)
    with client_for(TOKEN) as client:
        yield client


def sign_in(client: TestClient, next_path: str = "/ui/runs") -> httpx.Response:
    page = client.get("/ui/login", params={"next": next_path})
    assert page.status_code == 200
    return client.post(
        "/ui/login",
        params={"next": next_path},
        data={"csrf": csrf_of(page.text), "token": TOKEN},
    )


# ----- redirects and auth -----


@pytest.mark.parametrize("path", ["/", "/ui", "/ui/"])
def test_root_and_ui_redirect_to_the_runs_page(open_ui: TestClient, path: str) -> None:
    response = open_ui.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/runs"


def test_without_a_token_the_ui_is_open_and_login_redirects(open_ui: TestClient) -> None:
    page = open_ui.get("/ui/runs")
    assert page.status_code == 200
    assert "Sign out" not in page.text  # nothing to sign out of
    assert 'aria-current="page"' in page.text
    assert open_ui.get("/ui/login").headers["location"] == "/ui/runs"
    # forms still carry a csrf value (a per-process key) and a POST without it is refused
    assert open_ui.post("/ui/logout", data={}).status_code == 403
    ok = open_ui.post("/ui/logout", data={"csrf": auth.csrf_value(None)})
    assert ok.status_code == 303


def test_a_get_without_session_redirects_to_login_with_next(locked_ui: TestClient) -> None:
    for path in ("/ui/runs?status=failed&q=ab", "/ui/workflows", "/ui/queues", "/ui/schedules"):
        response = locked_ui.get(path)
        assert response.status_code == 303, path
        target = urlsplit(response.headers["location"])
        assert target.path == "/ui/login"
        assert parse_qs(target.query)["next"] == [path]
    assert locked_ui.post("/ui/logout", data={"csrf": CSRF}).status_code == 403


def test_login_form_wrong_token_is_401_and_right_token_sets_the_cookie(
    locked_ui: TestClient,
) -> None:
    page = locked_ui.get("/ui/login", params={"next": "/ui/queues"})
    assert page.status_code == 200
    assert re.search(r'<label for="token">API token</label>', page.text)
    assert re.search(r"<button[^>]*>Sign in</button>", page.text)
    login_csrf = csrf_of(page.text)
    assert login_csrf != CSRF  # the signed-in forms' value is not given to strangers
    wrong = locked_ui.post(
        "/ui/login", params={"next": "/ui/queues"}, data={"csrf": login_csrf, "token": "nope"}
    )
    assert wrong.status_code == 401
    assert "Wrong token" in wrong.text
    assert "set-cookie" not in wrong.headers
    no_csrf = locked_ui.post("/ui/login", data={"token": TOKEN})
    assert no_csrf.status_code == 403
    assert "set-cookie" not in no_csrf.headers

    response = locked_ui.post(
        "/ui/login", params={"next": "/ui/queues"}, data={"csrf": login_csrf, "token": TOKEN}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/queues"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"pyworkflow_ui={SESSION};")
    assert "HttpOnly" in cookie
    assert "Path=/ui" in cookie
    assert "samesite=strict" in cookie.lower()
    assert TOKEN not in cookie
    queues = locked_ui.get("/ui/queues")
    assert queues.status_code == 200
    assert csrf_of(queues.text) == CSRF
    assert re.search(r"<button[^>]*>Sign out</button>", queues.text)


def test_the_token_never_appears_in_pages_headers_or_cookies(locked_ui: TestClient) -> None:
    put_run("r-token-check", key="k1")
    seen: list[httpx.Response] = [locked_ui.get("/ui/login")]
    seen.append(sign_in(locked_ui))
    for path in ("/ui/runs", "/ui/workflows", "/ui/schedules", "/ui/queues", "/ui/login"):
        seen.append(locked_ui.get(path))
    seen.append(locked_ui.get("/ui/runs", headers={"X-Fragment": "runs-table"}))
    seen.append(locked_ui.post("/ui/logout", data={"csrf": CSRF}))
    for response in seen:
        assert TOKEN not in response.text
        assert all(TOKEN not in value for value in response.headers.values())
    assert all(TOKEN not in value for value in locked_ui.cookies.values())


def test_a_forged_or_stale_cookie_is_refused(locked_ui: TestClient) -> None:
    locked_ui.cookies.set("pyworkflow_ui", "0" * 64, path="/ui")
    assert locked_ui.get("/ui/runs").status_code == 303
    locked_ui.cookies.set("pyworkflow_ui", TOKEN, path="/ui")  # the token itself is no session
    assert locked_ui.get("/ui/runs").status_code == 303
    locked_ui.cookies.clear()
    raw = locked_ui.get("/ui/runs", headers={"cookie": b"pyworkflow_ui=\xc3\xa9\xff; x=\x01"})
    assert raw.status_code == 303


def test_post_needs_the_csrf_field_and_sign_out_clears_the_session(
    locked_ui: TestClient,
) -> None:
    assert sign_in(locked_ui).status_code == 303
    assert locked_ui.post("/ui/logout", data={}).status_code == 403
    assert locked_ui.post("/ui/logout", data={"csrf": "x" * 64}).status_code == 403
    as_json = locked_ui.post("/ui/logout", json={"csrf": CSRF})
    assert as_json.status_code == 403
    out = locked_ui.post("/ui/logout", data={"csrf": CSRF})
    assert out.status_code == 303
    assert out.headers["location"] == "/ui/login"
    assert (
        'pyworkflow_ui=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    )
    assert locked_ui.get("/ui/runs").status_code == 303


@pytest.mark.parametrize(
    "next_path",
    ["//evil.example/ui", "https://evil.example/ui/runs", "/\\evil.example", "/api/runs", "ui"],
)
def test_login_never_redirects_off_the_ui(locked_ui: TestClient, next_path: str) -> None:
    response = sign_in(locked_ui, next_path)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/runs"


def test_static_files_are_public_and_confined(locked_ui: TestClient) -> None:
    script = locked_ui.get("/ui/static/ui.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert "X-Fragment" in script.text
    css = locked_ui.get("/ui/static/ui.css")
    assert css.status_code == 200
    assert "prefers-color-scheme: dark" in css.text
    assert "from __future__" not in locked_ui.get("/ui/static/../app.py").text
    assert locked_ui.get("/ui/static/%2e%2e/app.py").status_code == 404


def test_pages_carry_security_headers_and_accessible_shell(open_ui: TestClient) -> None:
    page = open_ui.get("/ui/runs")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<html lang="en">' in page.text
    assert 'href="#main"' in page.text
    assert '<main id="main"' in page.text
    for label, href in [
        ("Runs", "/ui/runs"),
        ("Workflows", "/ui/workflows"),
        ("Schedules", "/ui/schedules"),
        ("Queues", "/ui/queues"),
    ]:
        assert re.search(rf'<a href="{href}"[^>]*>{label}</a>', page.text), label
    for label in ("Status", "Workflow", "Search run id or idempotency key"):
        assert re.search(rf"<label for=\"[^\"]+\">{label}</label>", page.text), label
    assert re.search(r"<button[^>]*>Filter</button>", page.text)
    assert '<th scope="col">Run id</th>' in page.text


# ----- the runs page -----


@pytest.fixture
def some_runs(open_ui: TestClient) -> dict[str, str]:
    """Runs of two workflows in several states."""
    runs = {
        "a-failed-1": put_run("a-failed-1", status=RunStatus.FAILED, minutes=1),
        "a-failed-2": put_run("a-failed-2", status=RunStatus.FAILED, minutes=2),
        "a-done": put_run("a-done", minutes=3, key="order-4711"),
        "b-failed": put_run(
            "b-failed", workflow_name="ui_shell.other", status=RunStatus.FAILED, minutes=4
        ),
        "b-waiting": put_run(
            "b-waiting",
            workflow_name="ui_shell.other",
            status=RunStatus.SUSPENDED,
            minutes=5,
            key="order-4711-b",
        ),
    }
    return runs


def test_runs_table_rows_links_and_status_badges(
    open_ui: TestClient, some_runs: dict[str, str]
) -> None:
    page = open_ui.get("/ui/runs")
    assert page.status_code == 200
    assert row_ids(page.text) == ["b-waiting", "b-failed", "a-done", "a-failed-2", "a-failed-1"]
    assert '<a href="/ui/runs/a-done">a-done</a>' in page.text
    badge = re.search(
        r'data-run-id="b-waiting".*?data-testid="status">([a-z]+)<', page.text, re.DOTALL
    )
    assert badge and badge.group(1) == "suspended"
    assert count_text(page.text, "failed") == "3"
    assert count_text(page.text, "suspended") == "1"
    assert count_text(page.text, "completed") == "1"
    assert count_text(page.text, "running") == "0"
    assert count_text(page.text, "all") == "5"
    assert 'rel="next"' not in page.text


def test_filter_by_status_and_workflow_counts_follow_the_workflow(
    open_ui: TestClient, some_runs: dict[str, str]
) -> None:
    page = open_ui.get("/ui/runs", params={"status": "failed"})
    assert row_ids(page.text) == ["b-failed", "a-failed-2", "a-failed-1"]
    assert '<option value="failed" selected>' in page.text
    page = open_ui.get("/ui/runs", params={"status": "failed", "workflow": "ui_shell.registered"})
    assert row_ids(page.text) == ["a-failed-2", "a-failed-1"]
    assert 'value="ui_shell.registered"' in page.text
    # counts are over the filtered workflow, all statuses
    assert count_text(page.text, "failed") == "2"
    assert count_text(page.text, "completed") == "1"
    assert count_text(page.text, "suspended") == "0"
    assert row_ids(open_ui.get("/ui/runs", params={"workflow": "nope"}).text) == []
    assert "No runs match these filters" in open_ui.get("/ui/runs?workflow=nope").text
    # the empty status and workflow mean all
    assert len(row_ids(open_ui.get("/ui/runs?status=&workflow=&q=").text)) == 5


def test_search_by_run_id_prefix_or_exact_idempotency_key(
    open_ui: TestClient, some_runs: dict[str, str]
) -> None:
    def found(**params: str) -> list[str]:
        response = open_ui.get("/ui/runs", params=params)
        assert response.status_code == 200
        return row_ids(response.text)

    assert found(q="a-done") == ["a-done"]
    assert found(q="a-failed") == ["a-failed-2", "a-failed-1"]
    assert found(q="order-4711") == ["a-done"]  # exact key, not a prefix of order-4711-b
    assert found(q="order-4711-b") == ["b-waiting"]
    assert found(q="  a-done  ") == ["a-done"]
    assert found(q="a-", status="failed") == ["a-failed-2", "a-failed-1"]
    assert found(q="b-", workflow="ui_shell.registered") == []
    assert found(q="zzz") == []
    assert "No run id starting with" in open_ui.get("/ui/runs?q=zzz").text


def test_paging_follows_the_storage_cursor_through_every_run(open_ui: TestClient) -> None:
    ids = {put_run(f"p-{i:03d}", minutes=i) for i in range(queries.PAGE_SIZE * 2 + 7)}
    seen: list[str] = []
    url = "/ui/runs"
    pages = 0
    while True:
        page = open_ui.get(url)
        assert page.status_code == 200
        rows = row_ids(page.text)
        assert 0 < len(rows) <= queries.PAGE_SIZE
        seen += rows
        pages += 1
        link = re.search(r'<a rel="next" href="([^"]+)">Next page</a>', page.text)
        if link is None:
            break
        url = html.unescape(link.group(1))
        assert "cursor=" in url
        assert "Newest runs" in open_ui.get(url).text
    assert pages == 3
    assert len(seen) == len(set(seen)) == len(ids)
    assert set(seen) == ids
    assert seen == sorted(seen, reverse=True)  # newest first across pages


def test_paging_keeps_the_filters(open_ui: TestClient) -> None:
    for i in range(queries.PAGE_SIZE + 3):
        put_run(f"f-{i:03d}", status=RunStatus.FAILED, minutes=i)
        put_run(f"c-{i:03d}", minutes=i)
    first = open_ui.get("/ui/runs", params={"status": "failed"})
    link = re.search(r'<a rel="next" href="([^"]+)">', first.text)
    assert link
    query = parse_qs(urlsplit(html.unescape(link.group(1))).query)
    assert query["status"] == ["failed"]
    second = open_ui.get(html.unescape(link.group(1)))
    assert all(run_id.startswith("f-") for run_id in row_ids(second.text))
    assert len(row_ids(first.text)) + len(row_ids(second.text)) == queries.PAGE_SIZE + 3


def test_counts_stop_at_the_cap(open_ui: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "COUNT_CAP", 4)
    monkeypatch.setattr(queries, "_COUNT_PAGE", 2)
    for i in range(6):
        put_run(f"cap-{i}", status=RunStatus.FAILED, minutes=i)
    put_run("cap-done")
    page = open_ui.get("/ui/runs")
    assert count_text(page.text, "failed") == "4+"
    assert count_text(page.text, "completed") == "1"
    assert count_text(page.text, "all") == "5+"
    assert "Counts stop at 4 runs each" in page.text


def test_a_search_past_its_cap_goes_on_with_next_page(
    open_ui: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "SEARCH_CAP", 100)
    put_run("needle-old", minutes=0)
    for i in range(250):
        put_run(f"hay-{i:03d}", minutes=i + 1)
    first = open_ui.get("/ui/runs", params={"q": "needle"})
    assert row_ids(first.text) == []
    assert "runs searched" in first.text
    url = "/ui/runs?q=needle"
    for _ in range(5):
        page = open_ui.get(url)
        if row_ids(page.text):
            break
        link = re.search(r'<a rel="next" href="([^"]+)">', page.text)
        assert link, "the search stopped without finding the run"
        url = html.unescape(link.group(1))
    assert row_ids(page.text) == ["needle-old"]
    # an exact run id is found on the first page, however old
    assert row_ids(open_ui.get("/ui/runs", params={"q": "needle-old"}).text) == ["needle-old"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "sleeping"}, "Status must be one of"),
        ({"status": ["failed", "completed"]}, "given 2 times"),
        ({"cursor": "not-a-cursor"}, "cursor is not valid"),
        ({"q": "x" * 301}, "longer than 300"),
        ({"workflow": "w" * 301}, "longer than 300"),
        ({"q": "a\x00b"}, "control characters"),
    ],
)
def test_bad_query_values_are_400_with_a_message(
    open_ui: TestClient, params: dict[str, Any], message: str
) -> None:
    page = open_ui.get("/ui/runs", params=params)
    assert page.status_code == 400
    assert message in html.unescape(page.text)
    assert 'data-testid="query-error"' in page.text
    fragment = open_ui.get("/ui/runs", params=params, headers={"X-Fragment": "runs-table"})
    assert fragment.status_code == 400
    assert open_ui.get("/ui/runs").status_code == 200  # nothing sticks


def test_the_live_fragment_has_an_etag_and_answers_304_until_a_row_changes(
    open_ui: TestClient,
) -> None:
    put_run("live-1", status=RunStatus.RUNNING)
    page = open_ui.get("/ui/runs")
    etag = re.search(r'data-live="runs-table"[^>]*data-live-etag="([^"]+)"', page.text)
    assert etag
    page_tag = html.unescape(etag.group(1))
    fragment = open_ui.get("/ui/runs", headers={"X-Fragment": "runs-table"})
    assert fragment.status_code == 200
    assert fragment.headers["etag"] == page_tag
    assert "<html" not in fragment.text and "<tbody" not in fragment.text
    assert row_ids(fragment.text) == ["live-1"]
    same = open_ui.get("/ui/runs", headers={"X-Fragment": "runs-table", "If-None-Match": page_tag})
    assert same.status_code == 304
    assert same.content == b""
    put_run("live-2", minutes=1)
    changed = open_ui.get(
        "/ui/runs", headers={"X-Fragment": "runs-table", "If-None-Match": page_tag}
    )
    assert changed.status_code == 200
    assert changed.headers["etag"] != page_tag
    assert row_ids(changed.text) == ["live-2", "live-1"]
    # the fragment of a filtered page has its own tag
    filtered = open_ui.get(
        "/ui/runs?status=running", headers={"X-Fragment": "runs-table", "If-None-Match": page_tag}
    )
    assert filtered.status_code == 200
    assert row_ids(filtered.text) == ["live-1"]
    unknown = open_ui.get("/ui/runs", headers={"X-Fragment": "other"})
    assert unknown.status_code == 400


def test_the_live_fragment_needs_the_session_too(locked_ui: TestClient) -> None:
    response = locked_ui.get("/ui/runs", headers={"X-Fragment": "runs-table"})
    assert response.status_code == 303


def test_hostile_names_and_keys_are_escaped(open_ui: TestClient) -> None:
    put_run("esc-1", workflow_name=HOSTILE_NAME, key=HOSTILE_KEY, status=RunStatus.FAILED)
    put_run("esc-2", workflow_name="bad\ud800name", key="k\udfff", minutes=1)
    for params in ({}, {"workflow": HOSTILE_NAME}, {"q": HOSTILE_KEY}):
        page = open_ui.get("/ui/runs", params=params)
        assert page.status_code == 200
        assert "<script>alert" not in page.text
        assert "<img src=x" not in page.text
        assert "onerror=alert(1)>" not in page.text
        assert "&lt;script&gt;alert(&#34;wf&#34;)&lt;/script&gt;" in page.text
    assert row_ids(open_ui.get("/ui/runs", params={"q": HOSTILE_KEY}).text) == ["esc-1"]
    fragment = open_ui.get("/ui/runs", headers={"X-Fragment": "runs-table"})
    assert fragment.status_code == 200
    assert "<script>alert" not in fragment.text
    assert "\ufffd" in fragment.text  # the lone surrogate, sent as U+FFFD
    # the hostile text as a query value is echoed escaped in the form
    page = open_ui.get("/ui/runs", params={"q": '"><script>x()</script>'})
    assert page.status_code == 200
    assert "<script>x()" not in page.text


# ----- workflows, schedules, queues -----


def test_workflows_page_lists_registered_workflows_counts_and_failures(
    open_ui: TestClient,
) -> None:
    put_run("wf-fail", status=RunStatus.FAILED, error_message="ValueError: card <declined>")
    put_run("wf-done", minutes=1)
    page = open_ui.get("/ui/workflows")
    assert page.status_code == 200
    row = re.search(
        r'data-testid="workflow-row" data-workflow="ui_shell.registered">(.*?)</tr>',
        page.text,
        re.DOTALL,
    )
    assert row, "the registered workflow is listed"
    assert '<a href="/ui/runs?workflow=ui_shell.registered">' in row.group(1)
    assert count_text(row.group(1), "failed") == "1"
    assert count_text(row.group(1), "completed") == "1"
    assert '<a class="mono" href="/ui/runs/wf-fail">' in row.group(1)
    assert "card &lt;declined&gt;" in row.group(1)


def test_schedules_page_lists_schedules(open_ui: TestClient) -> None:
    from pyworkflow.schedules import create_schedule

    assert "No schedules" in open_ui.get("/ui/schedules").text
    create_schedule("nightly<b>", registered, "0 3 * * *", args=(7,), paused=True)
    page = open_ui.get("/ui/schedules")
    assert page.status_code == 200
    assert 'data-schedule="nightly&lt;b&gt;"' in page.text
    assert re.search(r"<code[^>]*>0 3 \* \* \*</code>", page.text)
    assert "ui_shell.registered" in page.text
    assert "<code>7</code>" in page.text
    assert ">paused<" in page.text


def test_queues_page_lists_configured_queues_and_their_depth(open_ui: TestClient) -> None:
    pyworkflow.configure(queues={"emails": {"concurrency": 3, "rate": "10/min"}})
    page = open_ui.get("/ui/queues")
    assert page.status_code == 200
    row = re.search(r'data-queue="emails">(.*?)</tr>', page.text, re.DOTALL)
    assert row
    assert re.search(r'data-testid="queue-waiting">0<', row.group(1))
    assert ">3<" in row.group(1)
    assert "10 per 60.0 s" in row.group(1)


# ----- package data -----

UI_FILES = [
    "templates/base.html",
    "templates/login.html",
    "templates/runs.html",
    "templates/_runs_table.html",
    "templates/workflows.html",
    "templates/schedules.html",
    "templates/queues.html",
    "static/ui.js",
    "static/ui.css",
]


def test_the_installed_package_has_the_templates_and_static_files() -> None:
    from importlib import resources

    root = resources.files("pyworkflow.ui")
    for name in UI_FILES:
        assert root.joinpath(name).is_file(), name


def test_the_built_wheel_has_the_templates_and_static_files(tmp_path: Path) -> None:
    if importlib.util.find_spec("hatchling") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("hatchling (the build backend, in the dev extra) is not installed")
        pytest.skip("hatchling is not installed (pip install hatchling, or the dev extra)")
    from hatchling.builders.wheel import WheelBuilder

    project = Path(pyworkflow.__file__).resolve().parents[2]
    assert (project / "pyproject.toml").is_file()
    builder = WheelBuilder(str(project))
    wheels = list(builder.build(directory=str(tmp_path), versions=["standard"]))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        requires = wheel.read(metadata).decode()
    for name in UI_FILES:
        assert f"pyworkflow/ui/{name}" in names, name
    assert re.search(r"^Requires-Dist: jinja2", requires, re.MULTILINE | re.IGNORECASE)


# ----- the shell: flash messages, unknown pages -----


def test_a_flash_message_is_shown_once_escaped(open_ui: TestClient) -> None:
    from starlette.responses import RedirectResponse

    from pyworkflow.ui.app import flash

    redirect = flash(RedirectResponse("/ui/runs", 303), "Bad <JSON>: line 1", "error")
    cookie = redirect.headers["set-cookie"]
    assert cookie.startswith("pyworkflow_ui_flash=") and "Path=/ui" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    # as the browser keeps the cookie the redirect set (the jar's name for host "testserver")
    open_ui.cookies.set("pyworkflow_ui_flash", value, domain="testserver.local", path="/ui")
    page = open_ui.get("/ui/runs")
    shown = re.search(
        r'<div class="flash flash-error" data-testid="flash"[^>]*>(.*?)</div>', page.text
    )
    assert shown and shown.group(1) == "Bad &lt;JSON&gt;: line 1"
    assert 'role="alert"' in page.text
    assert "pyworkflow_ui_flash" in page.headers["set-cookie"]  # cleared
    assert 'data-testid="flash"' not in open_ui.get("/ui/runs").text


def test_an_unknown_ui_page_is_a_404_page_behind_the_same_rules(locked_ui: TestClient) -> None:
    assert locked_ui.get("/ui/nope").status_code == 303
    assert locked_ui.post("/ui/nope", data={"csrf": CSRF}).status_code == 403
    sign_in(locked_ui)
    page = locked_ui.get("/ui/nope/<x>")
    assert page.status_code == 404
    assert "Page not found" in page.text
    assert "<x>" not in page.text


def test_a_schedule_is_paused_resumed_and_triggered_from_its_row(locked_ui: TestClient) -> None:
    from pyworkflow.schedules import create_schedule, get_schedule

    create_schedule("hourly", registered, "0 * * * *", args=(3,))
    sign_in(locked_ui)
    page = locked_ui.get("/ui/schedules")
    assert re.search(r'action="/ui/schedules/hourly/pause" data-confirm="[^"]+"', page.text)
    assert 'action="/ui/schedules/hourly/trigger"' in page.text
    assert locked_ui.post("/ui/schedules/hourly/pause", data={}).status_code == 403
    assert get_schedule("hourly").paused is False

    done = locked_ui.post("/ui/schedules/hourly/pause", data={"csrf": CSRF})
    assert done.status_code == 303
    assert done.headers["location"] == "/ui/schedules"
    assert get_schedule("hourly").paused is True
    page = locked_ui.get("/ui/schedules")
    assert "Schedule hourly paused" in page.text
    assert 'action="/ui/schedules/hourly/resume"' in page.text

    locked_ui.post("/ui/schedules/hourly/resume", data={"csrf": CSRF})
    assert get_schedule("hourly").paused is False
    locked_ui.post("/ui/schedules/hourly/trigger", data={"csrf": CSRF})
    page = locked_ui.get("/ui/schedules")
    started = re.search(r"Schedule hourly triggered: run (\S+) started", page.text)
    assert started
    assert pyworkflow.get_run(started.group(1)).workflow == "ui_shell.registered"

    missing = locked_ui.post("/ui/schedules/nope%3Cx%3E/pause", data={"csrf": CSRF})
    assert missing.status_code == 303
    page = locked_ui.get("/ui/schedules")
    error = re.search(r'class="flash flash-error" data-testid="flash"[^>]*>(.*?)</div>', page.text)
    assert error and "Could not pause schedule nope&lt;x&gt;" in error.group(1)


def test_mounted_under_a_prefix_every_link_redirect_and_cookie_has_it() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    pyworkflow.configure(storage="memory://", embedded_worker=False)
    put_run("m-1")
    app = Starlette(routes=[Mount("/wf", app=create_app(api_token=TOKEN))])
    with TestClient(app, follow_redirects=False) as client:
        first = client.get("/wf/ui/runs?status=completed")
        assert first.headers["location"] == "/wf/ui/login?next=%2Fui%2Fruns%3Fstatus%3Dcompleted"
        login = client.get(first.headers["location"])
        done = client.post(
            "/wf/ui/login",
            params={"next": "/ui/runs?status=completed"},
            data={"csrf": csrf_of(login.text), "token": TOKEN},
        )
        assert done.headers["location"] == "/wf/ui/runs?status=completed"
        assert "Path=/wf/ui" in done.headers["set-cookie"]
        page = client.get("/wf/ui/runs")
        assert page.status_code == 200
        links = re.findall(r'(?:href|action|src)="(/[^"]*)"', page.text)
        assert links and all(link.startswith("/wf/ui/") for link in links), links
        assert '<a href="/wf/ui/runs/m-1">m-1</a>' in page.text
        assert client.get("/wf/ui/static/ui.js").status_code == 200
        assert client.get("/wf/").headers["location"] == "/wf/ui/runs"

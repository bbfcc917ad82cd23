"""The API token gates the UI: login page, wrong token, session cookie, sign out, API 401."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import httpx
from playwright.sync_api import BrowserContext, Page, expect

from pyworkflow.models import RunStatus
from tests.ui import ui_flows
from tests.ui.support import Client, Served, serve, session_cookie


def test_without_the_token_the_ui_and_the_api_refuse(page: Page, served: Served) -> None:
    page.goto("/ui/runs?status=failed")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    expect(page.get_by_label("API token")).to_be_visible()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page.get_by_test_id("runs-table")).to_have_count(0)
    assert served.token not in page.content()

    with httpx.Client(base_url=served.url, timeout=10, follow_redirects=False) as http:
        assert http.get("/api/runs").status_code == 401
        assert http.get("/api/runs", headers={"authorization": "Bearer wrong"}).status_code == 401
        ok = http.get("/api/runs", headers={"authorization": f"Bearer {served.token}"})
        assert ok.status_code == 200
        # a page without the cookie: a GET is sent to the login form, a POST refused
        redirected = http.get("/ui/runs")
        assert redirected.status_code == 303
        assert redirected.headers["location"].startswith("/ui/login?next=")
        assert http.post("/ui/runs/anything/cancel", data={"csrf": "x"}).status_code == 403
    # a forged cookie is no cookie
    forged = {"pyworkflow_ui": session_cookie("not-the-token-at-all-123")}
    with httpx.Client(base_url=served.url, timeout=10, cookies=forged) as http:
        assert http.get("/ui/runs").status_code == 303
        # the static files are public (the login page needs its stylesheet)
        assert http.get("/ui/static/ui.css").status_code == 200


def test_a_wrong_token_is_refused_and_the_right_one_signs_in(
    page: Page, context: BrowserContext, served: Served
) -> None:
    page.goto("/ui/runs")
    page.get_by_label("API token").fill("not-the-token-at-all-123")
    with page.expect_response(
        lambda r: "/ui/login" in r.url and r.request.method == "POST"
    ) as answer:
        page.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 401
    expect(page.get_by_text("Wrong token")).to_be_visible()
    assert not [c for c in context.cookies() if c["name"] == "pyworkflow_ui"]

    page.get_by_label("API token").fill(served.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/ui/runs$"))
    expect(page.get_by_test_id("runs-table")).to_be_attached()
    sign_out = page.get_by_role("link", name="Sign out").or_(
        page.get_by_role("button", name="Sign out")
    )
    expect(sign_out).to_be_visible()
    assert served.token not in page.content()
    (cookie,) = [c for c in context.cookies() if c["name"] == "pyworkflow_ui"]
    assert cookie["value"] == session_cookie(served.token)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    assert served.token not in served.log_text()

    # / and /ui lead to the runs page
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/ui/runs$"))

    sign_out.click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert not [c for c in context.cookies() if c["name"] == "pyworkflow_ui"]
    page.goto("/ui/workflows")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))


def test_csrf_and_the_next_parameter(page: Page, context: BrowserContext, served: Served) -> None:
    # a session cookie alone does not make a POST: the form's csrf value must come with it
    cookies = {"pyworkflow_ui": session_cookie(served.token)}
    with httpx.Client(base_url=served.url, timeout=10, cookies=cookies) as http:
        assert http.get("/ui/runs").status_code == 200
        for data in ({}, {"csrf": "forged"}):
            refused = http.post("/ui/runs/whatever/cancel", data=data)
            assert refused.status_code == 403, data
    # signing in never sends the browser to another site
    for target in ("https://evil.example/x", "//evil.example/x", "/\\evil.example/x"):
        page.goto(f"/ui/login?next={quote(target)}")
        page.get_by_label("API token").fill(served.token)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(re.compile(rf"^{re.escape(served.url)}/"))
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        context.clear_cookies()


def test_without_a_token_the_ui_is_open_on_loopback(
    page: Page, client: Client, tmp_path: Path
) -> None:
    run_id = client.start(ui_flows.quick, 7)
    client.wait(run_id, RunStatus.COMPLETED)
    # a second server on the same storage, without a token (so bound to 127.0.0.1 only)
    with serve(tmp_path, client.served.storage, None, worker=False) as open_server:
        page.goto(f"{open_server.url}/ui/runs")
        expect(page).to_have_url(f"{open_server.url}/ui/runs")
        expect(page.locator(f'[data-testid="run-row"][data-run-id="{run_id}"]')).to_have_count(1)
        expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
        assert not [c for c in page.context.cookies() if c["name"] == "pyworkflow_ui"]
        assert "without an API token" in open_server.log.read_text()

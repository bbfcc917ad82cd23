"""Issue 11's doors, tried as a hostile client or a careless operator would.

Lone surrogates, secrets in the log, replayed signed requests, empty tokens,
cross-site requests: each test here failed on the code before the fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

import pyworkflow
from pyworkflow import RunStatus, get_events, get_result, get_run, resume_hook, start
from pyworkflow.errors import ConfigError, HookNotFoundError
from pyworkflow.server import DELIVERY_HEADER, SIGNATURE_HEADER, create_app, sign, verify
from pyworkflow.server.options import check_bind, is_loopback, server_options
from pyworkflow.server.signing import SignatureError
from tests.server import workflows as wf
from tests.server.conftest import JSON, TOKEN, ServerFactory, _serve, received, wait_status

SURROGATE = "\ud800"

# ----- finding 2: a lone surrogate must not break the API or loop a run -----


def test_lone_surrogate_hook_payload_is_refused_with_400(http: httpx.Client) -> None:
    run_id = start(wf.collect, "sur", 1)
    wait_status(run_id, RunStatus.SUSPENDED)
    before = get_events(run_id)
    for body in (b'"\\ud800"', b'{"\\udfff": 1}', b'["ok", {"x": "a\\ud800b"}]'):
        response = http.post("/hooks/sur", content=body)
        assert response.status_code == 400, (body, response.text)
        assert "surrogate" in response.json()["detail"]
    # UTF-16 and UTF-8-with-BOM bodies are not UTF-8 JSON
    for body in ('"hi"'.encode("utf-16"), '"hi"'.encode("utf-16-le"), b'\xef\xbb\xbf"hi"'):
        assert http.post("/hooks/sur", content=body).status_code == 400, body
    assert get_events(run_id) == before
    # a valid pair of surrogate escapes is one real character and is accepted
    assert http.post("/hooks/sur", content=b'"\\ud83d\\ude00"').status_code == 202
    assert get_result(run_id, timeout=10) == ["\U0001f600"]


def test_stored_lone_surrogates_never_make_the_api_answer_500(http: httpx.Client) -> None:
    """A value stored through the Python API (which escapes it) still renders everywhere."""
    run_id = start(wf.wait_forever, "sur-stored")
    wait_status(run_id, RunStatus.SUSPENDED)
    resume_hook("sur-stored", {"v": SURROGATE, SURROGATE: 1})
    assert get_result(run_id, timeout=10) == {"v": SURROGATE, SURROGATE: 1}
    failing = start(wf.greet, SURROGATE)  # its result holds a surrogate too
    get_result(failing, timeout=10)
    for path in (
        "/api/runs",
        "/api/runs?status=completed",
        f"/api/runs/{run_id}",
        f"/api/runs/{run_id}/events",
        f"/api/runs/{failing}",
    ):
        response = http.get(path)
        assert response.status_code == 200, (path, response.text)
        response.content.decode("utf-8")  # strict UTF-8: valid Unicode text throughout
        json.loads(response.content)
    shown = http.get(f"/api/runs/{run_id}").json()
    assert shown["result"] == {"v": "\ufffd", "\ufffd": 1}  # shown as U+FFFD; stored as sent
    assert get_result(run_id) == {"v": SURROGATE, SURROGATE: 1}


def test_lone_surrogate_workflow_arguments_are_refused_at_the_door(http: httpx.Client) -> None:
    before = http.get("/api/runs").json()["runs"]
    body = b'{"workflow": "server_tests.wait", "args": ["\\ud800"]}'
    response = http.post("/api/runs", content=body)
    assert response.status_code == 400, response.text
    assert "surrogate" in response.json()["detail"]
    assert http.get("/api/runs").json()["runs"] == before


def test_a_hook_token_that_can_never_be_stored_fails_the_run_at_once(server: str) -> None:
    """Before: the run stayed pending, its activation crashing every few seconds."""
    run_id = start(wf.wait_forever, SURROGATE)
    with pytest.raises(ValueError, match=r"hook token .* lone surrogate"):
        get_result(run_id, timeout=10)
    assert get_run(run_id).status == RunStatus.FAILED
    for bad in ("", "x" * 513, "tab\there"):
        other = start(wf.wait_forever, bad)
        with pytest.raises(ValueError, match="hook token"):
            get_result(other, timeout=10)


# ----- finding 3: hook secrets stay out of the log, the API, the CLI and the logs -----


def test_hook_secret_is_never_in_events_api_cli_or_logs(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    lines: list[str] = []
    handler = pyworkflow.enable_logging("DEBUG", json=True, sink=lines.append)
    try:
        base = make_server(storage=f"sqlite:///{tmp_path / 'pw.db'}")
        run_id = start(wf.signed, "secret-hook", 1)
        wait_status(run_id, RunStatus.SUSPENDED)
        events = get_events(run_id)
        [created] = [e for e in events if e.type.value == "hook_created"]
        assert created.payload["signed"] is True
        assert wf.SECRET not in repr(events)
        with httpx.Client(base_url=base, timeout=10, headers=JSON) as http:
            api = http.get(f"/api/runs/{run_id}/events")
            assert api.status_code == 200 and wf.SECRET not in api.text
            body = b'{"paid": 1}'
            signed = http.post(
                "/hooks/secret-hook",
                content=body,
                headers={SIGNATURE_HEADER: sign(wf.SECRET, body)},
            )
            assert signed.status_code == 202  # verification still has the secret
        assert get_result(run_id, timeout=10) == [{"paid": 1}]
    finally:
        from loguru import logger

        logger.remove(handler)
    assert lines and not any(wf.SECRET in line for line in lines)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    for command in (["runs", "events", run_id, "--json"], ["runs", "show", run_id, "--json"]):
        out = subprocess.run(
            [sys.executable, "-m", "pyworkflow", "--log-level", "DEBUG", "--json-logs", *command],
            cwd=tmp_path,
            env={**env, "PYWORKFLOW_STORAGE": f"sqlite:///{tmp_path / 'pw.db'}"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert "hook_created" in out.stdout
        assert wf.SECRET not in out.stdout + out.stderr


def test_a_secret_written_by_an_older_version_is_masked() -> None:
    from datetime import UTC, datetime

    from pyworkflow.jsonshape import event_json
    from pyworkflow.models import Event, EventType

    old = Event(
        "r",
        1,
        EventType.HOOK_CREATED,
        "1",
        datetime.now(UTC),
        {"token": "t", "schema": None, "secret": "old-plain-secret"},
    )
    assert event_json(old)["payload"]["secret"] == "***"  # the CLI's --json and the API


def test_weak_hook_secrets_fail_the_run_with_a_message_that_hides_them(server: str) -> None:
    run_id = start(wf.signed_with, "weak", "tiny-pw")
    with pytest.raises(ValueError, match="at least 16") as failed:
        get_result(run_id, timeout=10)
    assert "tiny-pw" not in str(failed.value)
    assert get_run(run_id).error_message is not None
    assert "tiny-pw" not in str(get_run(run_id).error_message)
    empty = start(wf.signed_with, "empty", "")
    with pytest.raises(ValueError, match="does not turn signing off"):
        get_result(empty, timeout=10)


# ----- finding 4: signed requests cannot be replayed -----


def test_the_same_signed_request_three_times_records_one_payload(http: httpx.Client) -> None:
    run_id = start(wf.signed, "replay", 10)
    wait_status(run_id, RunStatus.SUSPENDED)
    body = b'{"charge": "ch_1"}'
    headers = {SIGNATURE_HEADER: sign(wf.SECRET, body)}
    answers = [http.post("/hooks/replay", content=body, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert {a.json()["run_id"] for a in answers} == {run_id}
    assert len(received(run_id)) == 1
    # a replay with a made-up delivery id is still the same signature: not recorded
    forged = http.post(
        "/hooks/replay", content=body, headers={**headers, DELIVERY_HEADER: "evt_forged"}
    )
    assert forged.status_code == 202 and len(received(run_id)) == 1


def test_a_delivery_id_is_recorded_once_even_when_re_signed(http: httpx.Client) -> None:
    run_id = start(wf.signed, "deliveries", 10)
    wait_status(run_id, RunStatus.SUSPENDED)
    body = b'{"event": 1}'
    now = int(time.time())
    for moment in (now - 20, now - 10, now):  # a sender retrying, signing each time
        response = http.post(
            "/hooks/deliveries",
            content=body,
            headers={
                SIGNATURE_HEADER: sign(wf.SECRET, body, timestamp=moment),
                DELIVERY_HEADER: "evt_1",
            },
        )
        assert response.status_code == 202
    assert len(received(run_id)) == 1
    other = http.post(
        "/hooks/deliveries",
        content=body,
        headers={SIGNATURE_HEADER: sign(wf.SECRET, body, timestamp=now - 5), DELIVERY_HEADER: "e2"},
    )
    assert other.status_code == 202 and len(received(run_id)) == 2
    for bad in (b"", b"has space", b"x" * 201, "caf\u00e9".encode("latin-1"), b"\x7f"):
        headers = {SIGNATURE_HEADER: sign(wf.SECRET, body).encode(), DELIVERY_HEADER: bad}
        response = http.post("/hooks/deliveries", content=body, headers=headers)
        assert response.status_code in (400, 401), bad  # never recorded, never 5xx
    assert len(received(run_id)) == 2


def test_concurrent_replays_of_one_delivery_record_it_once(server: str) -> None:
    run_id = start(wf.collect, "racing", 10)
    wait_status(run_id, RunStatus.SUSPENDED)
    statuses: list[int] = []

    def post() -> None:
        with httpx.Client(base_url=server, timeout=30, headers=JSON) as http:
            response = http.post(
                "/hooks/racing", content=b'{"n": 1}', headers={DELIVERY_HEADER: "same"}
            )
            statuses.append(response.status_code)

    threads = [threading.Thread(target=post) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [202] * 12
    assert len(received(run_id)) == 1


def test_resume_hook_delivery_id_in_python_is_idempotent(server: str) -> None:
    run_id = start(wf.collect, "py-delivery", 2)
    wait_status(run_id, RunStatus.SUSPENDED)
    assert resume_hook("py-delivery", 1, delivery_id="a") == run_id
    assert resume_hook("py-delivery", 1, delivery_id="a") == run_id
    assert len(received(run_id)) == 1
    resume_hook("py-delivery", 2, delivery_id="b")
    assert get_result(run_id, timeout=10) == [1, 2]
    with pytest.raises(ValueError, match="delivery id"):
        resume_hook("py-delivery", 3, delivery_id="bad id")
    with pytest.raises(HookNotFoundError):  # the run ended: its hook is gone
        resume_hook("py-delivery", 3, delivery_id="c")


def test_signature_tolerance_is_configurable() -> None:
    body = b"{}"
    header = sign("k" * 20, body, timestamp=1_000_000)
    assert verify("k" * 20, body, header, tolerance=300, now=1_000_299)
    with pytest.raises(SignatureError, match="tolerance"):
        verify("k" * 20, body, header, tolerance=300, now=1_000_301)
    assert verify("k" * 20, body, header, tolerance=3600, now=1_003_000)
    with pytest.raises(ConfigError, match="signature_tolerance"):
        create_app(signature_tolerance=0)


def test_configured_tolerance_applies_to_requests(make_server: ServerFactory) -> None:
    base = make_server(server={"signature_tolerance": 30})
    run_id = start(wf.signed, "tight", 1)
    wait_status(run_id, RunStatus.SUSPENDED)
    body = b"1"
    stale = sign(wf.SECRET, body, timestamp=int(time.time()) - 120)
    with httpx.Client(base_url=base, timeout=10, headers=JSON) as http:
        refused = http.post("/hooks/tight", content=body, headers={SIGNATURE_HEADER: stale})
        assert refused.status_code == 401 and "30 s" in refused.json()["detail"]
        fresh = sign(wf.SECRET, body)
        assert http.post("/hooks/tight", content=body, headers={SIGNATURE_HEADER: fresh}).is_success
    assert get_result(run_id, timeout=10) == [1]


# ----- finding 6: authentication that cannot switch itself off -----


@pytest.mark.parametrize("token", ["", "   ", "w3ak-tok"])
def test_empty_or_weak_api_token_is_a_config_error(token: str) -> None:
    with pytest.raises(ConfigError):
        create_app(api_token=token)
    pyworkflow.configure(storage="memory://", server={"api_token": token})
    with pytest.raises(ConfigError) as raised:
        server_options()
    assert token.strip() == "" or token not in str(raised.value)  # the value is not echoed


def test_empty_api_token_from_the_environment_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYWORKFLOW_SERVER__API_TOKEN", "")
    pyworkflow.configure(storage="memory://")
    with pytest.raises(ConfigError, match="api_token"):
        server_options()


def test_binding_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("example.com")
    with pytest.raises(ConfigError, match="--insecure-no-auth"):
        check_bind("0.0.0.0", None, insecure_no_auth=False)
    check_bind("0.0.0.0", TOKEN, insecure_no_auth=False)
    check_bind("0.0.0.0", None, insecure_no_auth=True)
    check_bind("127.0.0.1", None, insecure_no_auth=False)


def _cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    return subprocess.Popen(
        [sys.executable, "-m", "pyworkflow", "--storage", "memory://", *args],
        cwd=tmp_path,
        env={**clean, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_serve_refuses_what_it_should(tmp_path: Path) -> None:
    cases: list[tuple[list[str], dict[str, str], str]] = [
        (["serve", "--api-token", ""], {}, "empty"),
        (["serve", "--api-token", "abc"], {}, "too short"),
        (["serve"], {"PYWORKFLOW_SERVER__API_TOKEN": ""}, "empty"),
        (["serve", "--host", "0.0.0.0"], {}, "--insecure-no-auth"),
    ]
    for args, env, message in cases:
        process = _cli(tmp_path, *args, env=env)
        _, err = process.communicate(timeout=60)
        assert process.returncode != 0, (args, err)
        assert message in err, (args, err)
        assert "serving PyWorkflow" not in err


@pytest.mark.slow
def test_serve_on_loopback_without_a_token_warns_once(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = _cli(tmp_path, "serve", "--port", str(port), "--no-worker")
    try:
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "the server did not start"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1).is_success:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    warnings = [line for line in err.splitlines() if "without an API token" in line]
    assert len(warnings) == 1, err
    assert "WARNING" in warnings[0]


# ----- finding 7: cross-site requests -----


def test_posts_must_be_application_json(http: httpx.Client) -> None:
    run_id = start(wf.collect, "ctype", 10)
    wait_status(run_id, RunStatus.SUSPENDED)
    before = http.get("/api/runs").json()["runs"]
    start_body = json.dumps({"workflow": "server_tests.greet", "args": ["x"]}).encode()
    for content_type in (
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=utf-16",
        "application/jsonx",
        "",
    ):
        headers = {"content-type": content_type}
        started = http.post("/api/runs", content=start_body, headers=headers)
        assert started.status_code == 415, (content_type, started.text)
        hooked = http.post("/hooks/ctype", content=b"{}", headers=headers)
        assert hooked.status_code == 415, content_type
        cancel = http.post(f"/api/runs/{run_id}/cancel", headers=headers)
        assert cancel.status_code == 415, content_type
    assert http.get("/api/runs").json()["runs"] == before
    assert received(run_id) == []
    assert get_run(run_id).status == RunStatus.SUSPENDED
    ok = {"content-type": "Application/JSON; charset=utf-8"}
    assert http.post("/api/runs", content=start_body, headers=ok).status_code == 201
    assert http.post("/hooks/ctype", content=b"{}", headers=ok).status_code == 202
    cancelled = http.post(f"/api/runs/{run_id}/cancel", json={"reason": "enough"})
    assert cancelled.status_code == 202
    assert any(e.payload.get("reason") == "enough" for e in get_events(run_id))


def test_cors_is_off_by_default(http: httpx.Client) -> None:
    preflight = http.options(
        "/api/runs",
        headers={
            "origin": "https://evil.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers
    listed = http.get("/api/runs", headers={"origin": "https://evil.example"})
    assert listed.status_code == 200
    assert "access-control-allow-origin" not in listed.headers


def test_cors_allow_list(server: str) -> None:
    app = create_app(cors_origins=["https://app.example.com"])
    url, uvicorn_server, thread, sock = _serve(app)
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            asked = {"access-control-request-method": "POST"}
            allowed = http.options(
                "/api/runs", headers={"origin": "https://app.example.com", **asked}
            )
            assert allowed.status_code == 200
            assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
            denied = http.options("/api/runs", headers={"origin": "https://evil.example", **asked})
            assert denied.headers.get("access-control-allow-origin") != "https://evil.example"
            got = http.get("/api/runs", headers={"origin": "https://evil.example"})
            assert "access-control-allow-origin" not in got.headers
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    for bad in (["*"], ["https://app.example.com/path"], ["app.example.com"], "https://a.b"):
        with pytest.raises(ConfigError):
            create_app(cors_origins=bad)  # type: ignore[arg-type]  # a str is refused too
    pyworkflow.configure(storage="memory://", server={"cors_origins": ["ftp://x"]})
    with pytest.raises(ConfigError, match="cors_origins"):
        server_options()

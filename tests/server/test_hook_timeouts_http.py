"""A hook with a timeout over HTTP and the CLI: a payload in time is taken, a late one is a 404."""

from __future__ import annotations

import httpx
from typer.testing import CliRunner

from pyworkflow import (
    EventType,
    HookNotFoundError,
    HookTimeoutError,
    RunStatus,
    create_hook,
    get_events,
    workflow,
)
from pyworkflow.cli import app
from pyworkflow.client import get_result, start
from tests.server.conftest import wait_status


@workflow
async def http_timed_hook(token: str, timeout: float) -> str:
    try:
        return f"got {await create_hook(token=token, timeout=timeout)}"
    except HookTimeoutError as exc:
        return f"timed out after {exc.timeout}s"


def test_a_payload_in_time_is_accepted_and_a_late_one_is_not_found(
    server: str, http: httpx.Client
) -> None:
    on_time = start(http_timed_hook, "http-in-time", 30.0)
    wait_status(on_time, RunStatus.SUSPENDED)
    assert http.post("/hooks/http-in-time", json="yes").status_code == 202
    assert get_result(on_time, timeout=10) == "got yes"

    late = start(http_timed_hook, "http-late", 0.2)
    assert get_result(late, timeout=10) == "timed out after 0.2s"
    events = get_events(late)
    response = http.post("/hooks/http-late", json="too late")
    assert response.status_code == 404
    assert response.json()["detail"] == "no live hook with this token"
    assert get_events(late) == events  # nothing recorded
    disposed = [e for e in events if e.type == EventType.HOOK_DISPOSED]
    assert [e.payload["reason"] for e in disposed] == ["timeout"]


def test_the_cli_refuses_a_payload_after_the_timeout(server: str) -> None:
    run_id = start(http_timed_hook, "cli-late", 0.2)
    assert get_result(run_id, timeout=10) == "timed out after 0.2s"
    result = CliRunner().invoke(app, ["hooks", "resume", "cli-late", "--data", '"late"'])
    # main() prints it as one line and exits 1, like every error (tests/test_cli.py)
    assert result.exit_code == 1
    assert isinstance(result.exception, HookNotFoundError)
    assert "'cli-late'" in str(result.exception)

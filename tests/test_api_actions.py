"""``POST /api/runs/{id}/retry``, ``/replay`` and ``/hooks/{correlation_id}/resume``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import pyworkflow
from pyworkflow import EventType, RunStatus, get_events, get_result, get_run
from pyworkflow.server import create_app, openapi_document
from pyworkflow.workflow import _registry as registry
from tests import ui_run_flows as flows
from tests.conftest import FAST

TOKEN = "actions-api-token-0123456789"
JSON = {"content-type": "application/json"}


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


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    pyworkflow.configure(storage=f"sqlite:///{tmp_path / 'pw.db'}", **FAST)
    with TestClient(create_app(), headers=JSON) as client:
        yield client


def test_retry_a_failed_run(api: TestClient) -> None:
    run_id = pyworkflow.start(flows.fatal, "once")
    wait_status(run_id, RunStatus.FAILED)
    response = api.post(f"/api/runs/{run_id}/retry")
    assert response.status_code == 202, response.text
    assert response.json() == {"run_id": run_id, "status": "pending"}
    assert EventType.WORKFLOW_RETRIED in [e.type for e in get_events(run_id)]
    wait_status(run_id, RunStatus.FAILED)  # its step fails again
    assert [e.type for e in get_events(run_id)].count(EventType.WORKFLOW_FAILED) == 2


def test_retry_refuses_unknown_and_unfailed_runs_and_bodies(api: TestClient) -> None:
    assert api.post("/api/runs/nope/retry").status_code == 404
    done = pyworkflow.start(flows.greet, "ana")
    get_result(done, timeout=20)
    response = api.post(f"/api/runs/{done}/retry")
    assert response.status_code == 409
    assert "only failed runs" in response.json()["detail"]
    assert EventType.WORKFLOW_RETRIED not in [e.type for e in get_events(done)]
    assert api.post(f"/api/runs/{done}/retry", content=b"{not json").status_code == 400
    unknown = api.post(f"/api/runs/{done}/retry", json={"force": True})
    assert unknown.status_code == 422 and unknown.json()["errors"] == ["force: unknown field"]
    assert api.post(f"/api/runs/{done}/retry", json=[]).status_code == 422
    plain = api.post(f"/api/runs/{done}/retry", headers={"content-type": "text/plain"})
    assert plain.status_code == 415


def test_replay_reports_ok_then_the_divergence(api: TestClient) -> None:
    flows.drift["v2"] = False
    run_id = pyworkflow.start(flows.drifting, 3)
    assert get_result(run_id, timeout=20) == 6
    response = api.post(f"/api/runs/{run_id}/replay", json={})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "run_id": run_id,
        "deterministic": True,
        "operations": 1,
        "message": None,
        "position": None,
        "recorded": None,
        "called": None,
    }
    flows.drift["v2"] = True
    try:
        report = api.post(f"/api/runs/{run_id}/replay").json()
    finally:
        flows.drift["v2"] = False
    assert report["deterministic"] is False
    assert report["message"] and report["recorded"] and report["called"]
    assert len(get_events(run_id)) == get_run(run_id).last_seq  # nothing written


def test_replay_of_unknown_runs_and_workflows_is_404(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert api.post("/api/runs/nope/replay").status_code == 404
    run_id = pyworkflow.start(flows.greet, "gone")
    get_result(run_id, timeout=20)
    monkeypatch.delitem(registry, "ui_run.greet")  # as if the server did not import it
    response = api.post(f"/api/runs/{run_id}/replay")
    assert response.status_code == 404
    assert "no workflow named 'ui_run.greet'" in response.json()["detail"]


def test_resume_a_live_hook_by_its_correlation_id(api: TestClient) -> None:
    run_id = pyworkflow.start(flows.wait, "api:resume")
    cid = hook_cid(run_id)
    response = api.post(f"/api/runs/{run_id}/hooks/{cid}/resume", json={"ok": [1, "two"]})
    assert response.status_code == 202, response.text
    assert response.json() == {"run_id": run_id}
    assert get_result(run_id, timeout=20) == {"got": {"ok": [1, "two"]}}
    # the hook is gone now: 409, nothing recorded
    gone = api.post(f"/api/runs/{run_id}/hooks/{cid}/resume", json=1)
    assert gone.status_code == 409
    received = [e for e in get_events(run_id) if e.type == EventType.HOOK_RECEIVED]
    assert len(received) == 1


def test_resume_with_no_body_sends_null(api: TestClient) -> None:
    run_id = pyworkflow.start(flows.wait, "api:null")
    cid = hook_cid(run_id)
    assert api.post(f"/api/runs/{run_id}/hooks/{cid}/resume").status_code == 202
    assert get_result(run_id, timeout=20) == {"got": None}


def test_resume_refusals(api: TestClient) -> None:
    run_id = pyworkflow.start(flows.typed, "api:typed")
    cid = hook_cid(run_id)
    url = f"/api/runs/{run_id}/hooks/{cid}/resume"
    assert api.post("/api/runs/nope/hooks/1/resume", json={}).status_code == 404
    assert api.post(f"/api/runs/{run_id}/hooks/99/resume", json={}).status_code == 404
    assert api.post(url, content=b"{bad").status_code == 400
    assert api.post(url, json={}, headers={"content-type": "text/plain"}).status_code == 415
    misfit = api.post(url, json={"approver": 3})
    assert misfit.status_code == 422
    assert any("approver" in line for line in misfit.json()["errors"])
    assert not [e for e in get_events(run_id) if e.type == EventType.HOOK_RECEIVED]
    ok = api.post(url, json={"approver": "ann", "amount": 5})
    assert ok.status_code == 202
    assert get_result(run_id, timeout=20)["approver"] == "ann"


def test_a_disposed_hook_of_a_waiting_run_is_409(api: TestClient) -> None:
    run_id = pyworkflow.start(flows.after_hook, "api:after")
    cid = hook_cid(run_id)
    assert api.post(f"/api/runs/{run_id}/hooks/{cid}/resume", json="first").status_code == 202
    wait_until(lambda: any(e.type == EventType.HOOK_DISPOSED for e in get_events(run_id)))
    wait_status(run_id, RunStatus.SUSPENDED)
    response = api.post(f"/api/runs/{run_id}/hooks/{cid}/resume", json="second")
    assert response.status_code == 409
    assert "no longer live" in response.json()["detail"]


def test_the_actions_need_the_bearer_token_when_configured(tmp_path: Path) -> None:
    pyworkflow.configure(storage=f"sqlite:///{tmp_path / 'pw.db'}", **FAST)
    run_id = pyworkflow.start(flows.fatal, "token")
    wait_status(run_id, RunStatus.FAILED)
    with TestClient(create_app(api_token=TOKEN), headers=JSON) as client:
        for path in ("retry", "replay", "hooks/1/resume"):
            bare = client.post(f"/api/runs/{run_id}/{path}")
            assert bare.status_code == 401, path
            assert bare.headers["www-authenticate"] == "Bearer"
            wrong = client.post(
                f"/api/runs/{run_id}/{path}", headers={"authorization": "Bearer wrong"}
            )
            assert wrong.status_code == 401
        assert get_run(run_id).status == RunStatus.FAILED  # nothing happened
        good = {"authorization": f"Bearer {TOKEN}"}
        assert client.post(f"/api/runs/{run_id}/replay", headers=good).status_code == 200
        assert client.post(f"/api/runs/{run_id}/retry", headers=good).status_code == 202


def test_the_openapi_document_describes_them() -> None:
    paths = openapi_document()["paths"]
    assert paths["/api/runs/{run_id}/retry"]["post"]["operationId"] == "retryRun"
    assert paths["/api/runs/{run_id}/replay"]["post"]["operationId"] == "replayRun"
    hook = paths["/api/runs/{run_id}/hooks/{correlation_id}/resume"]["post"]
    assert {"202", "400", "401", "404", "409", "413", "415", "422"} <= set(hook["responses"])
    report = openapi_document()["components"]["schemas"]["ReplayReport"]
    assert set(report["required"]) == set(report["properties"])

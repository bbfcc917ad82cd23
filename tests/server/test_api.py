"""The JSON API over runs: list with filters and cursors, get, events, start, cancel."""

from __future__ import annotations

import httpx
import pytest

from pyworkflow import RunStatus, get_events, get_result, get_run, start
from tests.server import workflows as wf
from tests.server.conftest import ServerFactory, wait_status


def test_list_filters_and_paginates_through_every_page(http: httpx.Client) -> None:
    greeted = [start(wf.greet, f"n{i}") for i in range(7)]
    waiting = [start(wf.wait_forever, f"list:{i}") for i in range(3)]
    for run_id in greeted:
        get_result(run_id, timeout=10)
    for run_id in waiting:
        wait_status(run_id, RunStatus.SUSPENDED)

    def all_pages(**params: object) -> list[str]:
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            response = http.get("/api/runs", params=query)
            assert response.status_code == 200, response.text
            body = response.json()
            assert len(body["runs"]) <= int(str(params.get("limit", 50)))
            seen += [run["run_id"] for run in body["runs"]]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                return seen

    everything = all_pages(limit=3)
    assert sorted(everything) == sorted(greeted + waiting)
    assert len(everything) == len(set(everything))  # no run twice across pages
    assert sorted(all_pages(limit=2, status="completed")) == sorted(greeted)
    assert sorted(all_pages(limit=2, status="suspended")) == sorted(waiting)
    assert sorted(all_pages(limit=1, workflow="server_tests.wait")) == sorted(waiting)
    assert all_pages(workflow="server_tests.wait", status="completed") == []
    assert http.get("/api/runs", params={"workflow": "nope"}).json() == {
        "runs": [],
        "next_cursor": None,
    }


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "ten"},
        {"status": "sleeping"},
        {"cursor": "not-a-cursor"},
    ],
)
def test_list_rejects_bad_query_with_422(http: httpx.Client, params: dict[str, str]) -> None:
    response = http.get("/api/runs", params=params)
    assert response.status_code == 422
    assert response.json()["detail"]


def test_get_run_and_events(http: httpx.Client) -> None:
    run_id = start(wf.greet, "ana")
    assert get_result(run_id, timeout=10) == "hello ana!"
    run = http.get(f"/api/runs/{run_id}").json()
    assert run["run_id"] == run_id
    assert run["workflow"] == "server_tests.greet"
    assert run["status"] == "completed"
    assert run["result"] == "hello ana!"
    assert run["error_message"] is None
    assert run["completed_at"] is not None and run["created_at"] <= run["completed_at"]

    events = http.get(f"/api/runs/{run_id}/events").json()["events"]
    assert [e["seq"] for e in events] == [e.seq for e in get_events(run_id)]
    assert [e["type"] for e in events] == [e.type.value for e in get_events(run_id)]
    assert events[0]["type"] == "workflow_started"
    assert events[-1]["type"] == "workflow_completed"

    assert http.get("/api/runs/missing").status_code == 404
    assert http.get("/api/runs/missing/events").status_code == 404
    assert http.post("/api/runs/missing/cancel").status_code == 404


def test_run_json_makes_results_json_safe(http: httpx.Client) -> None:
    run_id = start(wf.typed_payment, "json-safe")
    wait_status(run_id, RunStatus.SUSPENDED)
    assert http.post("/hooks/json-safe", json={"amount": 3, "currency": "USD"}).status_code == 202
    get_result(run_id, timeout=10)
    run = http.get(f"/api/runs/{run_id}").json()
    assert run["result"] == {"is_payment": True, "payment": {"amount": 3, "currency": "USD"}}


def test_start_by_name_and_cancel(http: httpx.Client) -> None:
    response = http.post(
        "/api/runs",
        json={"workflow": "server_tests.greet", "args": ["bo"], "kwargs": {"punctuation": "?"}},
    )
    assert response.status_code == 201
    run_id = response.json()["run_id"]
    assert get_result(run_id, timeout=10) == "hello bo?"

    # idempotency key: starting again returns the first run
    body = {"workflow": "server_tests.wait", "args": ["cancel-me"], "idempotency_key": "k1"}
    first = http.post("/api/runs", json=body).json()["run_id"]
    assert http.post("/api/runs", json=body).json()["run_id"] == first
    wait_status(first, RunStatus.SUSPENDED)
    cancelled = http.post(f"/api/runs/{first}/cancel")
    assert cancelled.status_code == 202
    assert cancelled.json() == {"cancelled": True}
    wait_status(first, RunStatus.CANCELLED)
    assert http.get(f"/api/runs/{first}").json()["status"] == "cancelled"
    again = http.post(f"/api/runs/{first}/cancel")
    assert again.status_code == 202
    assert again.json() == {"cancelled": False}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"workflow": "no.such.workflow"}, 404),
        ({}, 422),
        ({"workflow": ""}, 422),
        ({"workflow": 3}, 422),
        ({"workflow": "server_tests.greet", "args": "ana"}, 422),
        ({"workflow": "server_tests.greet", "kwargs": []}, 422),
        ({"workflow": "server_tests.greet", "extra": 1}, 422),
        ({"workflow": "server_tests.greet"}, 422),  # missing argument
        ({"workflow": "server_tests.greet", "args": ["a", "b", "c"]}, 422),
        ({"workflow": "server_tests.greet", "args": ["a"], "kwargs": {"nope": 1}}, 422),
        (["server_tests.greet"], 422),
    ],
)
def test_start_rejects_bad_bodies(http: httpx.Client, body: object, status: int) -> None:
    before = http.get("/api/runs").json()["runs"]
    response = http.post("/api/runs", json=body)
    assert response.status_code == status, response.text
    assert http.get("/api/runs").json()["runs"] == before


def test_start_rejects_non_json_with_400(http: httpx.Client) -> None:
    assert http.post("/api/runs", content=b"{oops").status_code == 400
    assert http.post("/api/runs", content=b"").status_code == 400


def test_sqlite_storage_and_mounting(make_server: ServerFactory, tmp_path: object) -> None:
    """The same API on SQLite, with the app mounted under a prefix of a user's app."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from pyworkflow.server import create_app
    from tests.server.conftest import _serve

    make_server(storage="sqlite:///pw.db")
    outer = Starlette(routes=[Mount("/workflows", app=create_app())])
    url, server, thread, sock = _serve(outer)
    try:
        run_id = start(wf.wait_forever, "mounted")
        wait_status(run_id, RunStatus.SUSPENDED)
        with httpx.Client(base_url=f"{url}/workflows", timeout=10) as http:
            assert http.get(f"/api/runs/{run_id}").json()["status"] == "suspended"
            assert http.post("/hooks/mounted", json=[1]).status_code == 202
            assert http.get("/openapi.json").json()["servers"] == [{"url": "/workflows"}]
        assert get_result(run_id, timeout=10) == [1]
        assert get_run(run_id).status == RunStatus.COMPLETED
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

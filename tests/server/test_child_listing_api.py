"""GET /api/runs?parent=ID lists a run's children (groundwork for child workflows)."""

from __future__ import annotations

import asyncio

import httpx

import pyworkflow
from tests.server.conftest import ServerFactory
from tests.test_child_listing import _family


def test_the_api_filters_runs_by_parent(make_server: ServerFactory) -> None:
    base_url = make_server()
    _family("memory://")
    with httpx.Client(base_url=base_url, timeout=10) as http:
        body = http.get("/api/runs", params={"parent": "parent-1"}).json()
        assert [r["run_id"] for r in body["runs"]] == ["kid-2", "kid-1", "kid-0"]
        assert body["runs"][0]["parent_run_id"] == "parent-1"
        assert http.get("/api/runs", params={"parent": "nobody"}).json()["runs"] == []


@pyworkflow.workflow
async def api_kid(n: int) -> int:
    return n * 2


@pyworkflow.workflow
async def api_parent() -> list[int]:
    return list(await asyncio.gather(api_kid(1), api_kid(2)))


def test_a_parent_run_lists_its_children(make_server: ServerFactory) -> None:
    base_url = make_server()
    run_id = pyworkflow.start(api_parent)
    assert pyworkflow.get_result(run_id, timeout=30) == [2, 4]
    with httpx.Client(base_url=base_url, timeout=10) as http:
        body = http.get(f"/api/runs/{run_id}").json()
        children = body["children"]
        assert {c["workflow"] for c in children} == {"api_kid"}
        assert [c["status"] for c in children] == ["completed", "completed"]
        assert {c["policy"] for c in children} == {"request_cancel"}
        kid = http.get(f"/api/runs/{children[0]['run_id']}").json()
        assert kid["parent_run_id"] == run_id
        assert "children" not in kid  # a run without children has no list

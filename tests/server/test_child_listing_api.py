"""GET /api/runs?parent=ID lists a run's children (groundwork for child workflows)."""

from __future__ import annotations

import httpx

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

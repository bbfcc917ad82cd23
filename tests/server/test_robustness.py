"""Arbitrary bytes and JSON at ``POST /hooks/{token}``, and 200 concurrent payloads."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyworkflow import RunStatus, get_result, get_run, start
from pyworkflow.client import check_replay
from pyworkflow.runtime import get_runtime
from tests.server import workflows as wf
from tests.server.conftest import received, wait_status

#: Text that includes lone surrogates (``"\ud800"``), which JSON can escape but UTF-8 cannot hold.
any_text = st.text(st.characters(exclude_categories=()), max_size=12)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=12,
)
payment_like = st.fixed_dictionaries(
    {"amount": st.integers(-(10**6), 10**6), "currency": st.text(max_size=5)}
)
bodies = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | payment_like.map(lambda v: json.dumps(v).encode())
)


@pytest.mark.slow
def test_arbitrary_input_gets_4xx_never_5xx(server: str, http: httpx.Client) -> None:
    run_id = start(wf.collect, "fuzz", 10**9, True)
    wait_status(run_id, RunStatus.SUSPENDED)
    accepted = 0

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        token=st.just("fuzz") | st.text(max_size=20),
        body=bodies,
        content_type=st.sampled_from(
            [
                "application/json",
                "application/json",
                "application/json; charset=utf-8",
                "application/json; charset=utf-16",
                "text/plain",
                "",
                "x/\x7f",
            ]
        ),
    )
    def post(token: str, body: bytes, content_type: str) -> None:
        nonlocal accepted
        headers = {"content-type": content_type}  # "" overrides the client's JSON default
        response = http.post(f"/hooks/{quote(token, safe='')}", content=body, headers=headers)
        assert response.status_code < 500, (token, body, response.text)
        not_json = not content_type.startswith("application/json") or "16" in content_type
        if not_json:  # refused before the token is even looked up
            # unless the URL names no hook route at all ("/hooks/", or "." and ".." which the
            # client normalizes away): then the router's own 404
            routed_away = response.status_code == 404 and response.json()["detail"] == "Not Found"
            assert response.status_code == 415 or routed_away, (token, content_type, response.text)
        if response.status_code == 202:
            accepted += 1
            assert token == "fuzz"
            assert response.json() == {"run_id": run_id}
        else:
            assert 400 <= response.status_code < 500
            assert response.json()["detail"]

    post()
    assert accepted > 0  # some payloads fit the schema and went through
    # still up and still correct: nothing recorded makes a read answer 5xx
    assert http.get("/openapi.json").status_code == 200
    for path in ("/api/runs", "/api/runs?status=suspended", f"/api/runs/{run_id}"):
        assert http.get(path).status_code == 200, path
    assert http.get(f"/api/runs/{run_id}/events").status_code == 200
    assert http.post("/hooks/fuzz", json={"amount": 1, "currency": "EUR"}).status_code == 202
    assert len(received(run_id)) == accepted + 1
    assert get_run(run_id).status in (RunStatus.SUSPENDED, RunStatus.RUNNING, RunStatus.PENDING)


@pytest.mark.slow
def test_200_concurrent_payloads_recorded_once_in_one_replayable_order(server: str) -> None:
    count = 200
    run_id = start(wf.collect, "many", count)
    wait_status(run_id, RunStatus.SUSPENDED)
    statuses: list[int] = []

    async def post_all() -> None:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=server, timeout=30, limits=limits) as http:

            async def post(i: int) -> None:
                response = await http.post("/hooks/many", json={"i": i})
                statuses.append(response.status_code)

            async with anyio.create_task_group() as tg:
                for i in range(count):
                    tg.start_soon(post, i)

    anyio.run(post_all)
    assert statuses == [202] * count
    seen: list[Any] = get_result(run_id, timeout=30)
    events = received(run_id)
    serializer = get_runtime().serializer
    logged = [serializer.loads(e.payload["data"]) for e in events]
    assert len(events) == count
    assert sorted(p["i"] for p in logged) == list(range(count))  # each exactly once
    assert seen == logged  # the workflow saw them in log order
    report = check_replay(run_id)
    assert report.deterministic, report.message

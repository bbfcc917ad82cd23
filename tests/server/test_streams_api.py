"""``GET /api/runs/{run_id}/streams/{name}``: server-sent events, resumed from Last-Event-ID."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from pyworkflow import (
    RunStatus,
    create_hook,
    get_result,
    resume_hook,
    start,
    step,
    workflow,
    write_stream,
)
from pyworkflow.server import streams_api
from tests.server.conftest import TOKEN, ServerFactory, wait_status


@step
async def counting(count: int, pause: float) -> int:
    for i in range(count):
        await write_stream("progress", {"i": i, "text": "line one\nline two"})
        await anyio.sleep(pause)
    return count


@workflow
async def streaming(count: int, pause: float = 0.0) -> int:
    return await counting(count, pause)


def sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Parse server-sent events: dicts of id, event and data (data lines joined by newlines)."""
    event: dict[str, Any] = {}
    for line in lines:
        if not line:
            if event:
                yield event
            event = {}
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(": ")
        if field == "data":
            event["data"] = value if "data" not in event else f"{event['data']}\n{value}"
        else:
            event[field] = value


def test_a_reader_follows_reconnects_and_sees_every_chunk_in_order(
    make_server: ServerFactory,
) -> None:
    base = make_server()
    run_id = start(streaming, 300, 0.002)
    url = f"{base}/api/runs/{run_id}/streams/progress"
    seen: list[int] = []
    with httpx.Client(timeout=30) as http:
        with http.stream("GET", url) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for event in sse(response.iter_lines()):
                if event.get("event") == "chunk":
                    assert int(event["id"]) == len(seen) + 1
                    seen.append(json.loads(event["data"])["i"])
                    if len(seen) == 120:
                        break  # the connection drops mid-run
        with http.stream("GET", url, headers={"Last-Event-ID": "120"}) as response:
            events = list(sse(response.iter_lines()))
    chunks = [e for e in events if e.get("event") == "chunk"]
    assert [int(e["id"]) for e in chunks] == list(range(121, 301))
    seen += [json.loads(e["data"])["i"] for e in chunks]
    assert seen == list(range(300))
    assert json.loads(chunks[0]["data"])["text"] == "line one\nline two"
    assert events[-1] == {"event": "end", "data": "{}"}
    assert events[0] == {"retry": "1000"}
    assert get_result(run_id, timeout=30) == 300


def test_after_query_unknown_run_bad_seq_and_token(make_server: ServerFactory) -> None:
    base = make_server(api_token=TOKEN)
    run_id = start(streaming, 3)
    assert get_result(run_id, timeout=30) == 3
    url = f"{base}/api/runs/{run_id}/streams/progress"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(timeout=30) as http:
        assert http.get(url).status_code == 401
        body = http.get(f"{url}?after=2", headers=auth).text
        events = list(sse(iter(body.splitlines())))
        assert [e.get("id") for e in events if e.get("event") == "chunk"] == ["3"]
        missing = http.get(f"{base}/api/runs/nope/streams/progress", headers=auth)
        assert missing.status_code == 404 and "nope" in missing.json()["detail"]
        bad = http.get(url, headers={**auth, "Last-Event-ID": "x1"})
        assert bad.status_code == 422 and "Last-Event-ID" in bad.json()["detail"]
        empty = http.get(f"{base}/api/runs/{run_id}/streams/other", headers=auth).text
        assert list(sse(iter(empty.splitlines()))) == [
            {"retry": "1000"},
            {"event": "end", "data": "{}"},
        ]


@workflow
async def quiet_between(token: str) -> str:
    await write_stream("talk", "before")  # workflow code writes too
    async for payload in create_hook(token=token):
        await write_stream("talk", payload)
        break
    return "done"


def test_a_quiet_stream_gets_keep_alive_comments_until_it_ends(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streams_api, "KEEPALIVE", 0.05)
    base = make_server()
    run_id = start(quiet_between, "quiet-hook")
    wait_status(run_id, RunStatus.SUSPENDED)  # its hook exists
    lines: list[str] = []
    resumed = False
    with httpx.Client(timeout=30) as http:
        with http.stream("GET", f"{base}/api/runs/{run_id}/streams/talk") as response:
            for line in response.iter_lines():
                lines.append(line)
                if not resumed and lines.count(": keep-alive") == 2:
                    resume_hook("quiet-hook", "after")  # the run writes again and ends
                    resumed = True
    data = [line for line in lines if line.startswith("data: ")]
    assert data == ['data: "before"', 'data: "after"', "data: {}"]
    first, second = lines.index('data: "before"'), lines.index('data: "after"')
    assert lines[first:second].count(": keep-alive") >= 2  # sent while nothing came
    assert "event: end" in lines[second:]
    assert get_result(run_id, timeout=30) == "done"

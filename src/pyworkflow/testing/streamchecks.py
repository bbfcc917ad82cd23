"""A durable stream read over HTTP across a worker SIGKILL and a reader reconnect.

:func:`stream_across_kill` is the check every backend runs (``StreamProcessCases``):
a step in a ``pyworkflow worker`` subprocess writes ``chunks`` chunks; a reader
follows ``GET /api/runs/{id}/streams/progress`` (server-sent events) served from
this process; the worker is killed (SIGKILL) while the step writes, another
worker retries the step, and the reader drops its connection once and resumes
with ``Last-Event-ID``. The reader must see every chunk once, in order.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from pyworkflow.testing.servers import wait_for
from pyworkflow.testing.workers import WorkerProcesses

__all__ = ["StreamReport", "serve_in_thread", "sse_events", "stream_across_kill"]


@attrs.frozen
class StreamReport:
    """What the reader saw (``figures``) and anything wrong (``problems``)."""

    figures: dict[str, Any]
    problems: list[str]


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """Parse server-sent events into dicts of their fields (data lines joined by newlines)."""
    event: dict[str, str] = {}
    for line in lines:
        if not line:
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(": ")
            joined = value if field != "data" or "data" not in event else f"{event[field]}\n{value}"
            event[field] = joined


def serve_in_thread(app: Any) -> tuple[str, Any, threading.Thread]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port: ``(base URL, server, thread)``."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # accepted connections inherit TCP_NODELAY (else ~40 ms per keep-alive request)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "uvicorn to start")
    return f"http://127.0.0.1:{port}", server, thread


def stream_across_kill(
    storage_url: str,
    directory: Path,
    *,
    chunks: int = 1000,
    kill_at: int = 300,
    reconnect_at: int = 600,
    pause: float = 0.004,
    timeout: float = 180.0,
) -> StreamReport:
    """Run the check on ``storage_url`` (see the module docstring); return its report."""
    import httpx

    import pyworkflow
    from pyworkflow.server import create_app
    from pyworkflow.testing import streamflows

    pool = WorkerProcesses(
        storage_url,
        directory,
        modules="pyworkflow.testing.streamflows",
        settings={"PYWORKFLOW_LEASE_SECONDS": "2", "PYWORKFLOW_POLL_INTERVAL": "0.2"},
    )
    problems: list[str] = []
    seen: list[tuple[int, int]] = []  # (seq, i)
    killed_at = reconnects = 0
    began = time.monotonic()
    server = None
    try:
        pool.start("w1")
        pyworkflow.configure(storage=storage_url, embedded_worker=False)
        base, server, _thread = serve_in_thread(create_app())
        run_id = pyworkflow.start(streamflows.stream_progress, chunks, pause)
        url = f"{base}/api/runs/{run_id}/streams/progress"
        ended = False
        with httpx.Client(timeout=60) as http:
            while not ended and time.monotonic() - began < timeout:
                headers = {"Last-Event-ID": str(seen[-1][0])} if seen else {}
                with http.stream("GET", url, headers=headers) as response:
                    if response.status_code != 200:
                        problems.append(f"GET {url}: {response.status_code} {response.read()!r}")
                        break
                    for event in sse_events(response.iter_lines()):
                        if event.get("event") == "end":
                            ended = True
                            break
                        if event.get("event") != "chunk":
                            continue
                        seen.append((int(event["id"]), int(json.loads(event["data"])["i"])))
                        if len(seen) == kill_at:
                            pool.kill("w1")  # SIGKILL while the step writes
                            killed_at = len(seen)
                            pool.start("w2")
                        if len(seen) == reconnect_at:
                            reconnects += 1
                            break  # drop the connection; the next GET resumes after seen[-1]
        if not ended:
            problems.append(f"the stream did not end within {timeout:g}s ({len(seen)} chunks)")
        result = pyworkflow.get_result(
            run_id, timeout=max(1.0, timeout - (time.monotonic() - began))
        )
        if result != chunks:
            problems.append(f"run {run_id}: result {result!r}, expected {chunks}")
        seqs = [seq for seq, _ in seen]
        values = [i for _, i in seen]
        if seqs != list(range(1, chunks + 1)):
            problems.append(f"seqs are not 1..{chunks} in order: {len(seqs)} seen")
        if values != list(range(chunks)):
            dupes = len(values) - len(set(values))
            problems.append(f"chunk values are not 0..{chunks - 1} once each ({dupes} repeated)")
        stored = list(pyworkflow.read_stream_sync(run_id, "progress", follow=False))
        attempts = sorted({item.attempt or 0 for item in stored})
        if len(stored) != chunks:
            problems.append(f"storage holds {len(stored)} chunks, expected {chunks}")
        if len(attempts) < 2:
            problems.append(f"the step was not retried after the kill: attempts {attempts}")
        figures = {
            "chunks": len(seen),
            "killed_at": killed_at,
            "reconnects": reconnects,
            "attempts": attempts,
            "seconds": round(time.monotonic() - began, 2),
        }
        if problems:
            problems.append(pool.log_text())
        return StreamReport(figures, problems)
    finally:
        if server is not None:
            server.should_exit = True
        pool.stop_all()

"""A run of a workflow no worker knows waits, visibly (issue 12, finding 6).

The run stays pending; each worker process that meets it records one
``workflow_unknown`` event and logs one warning per workflow name; ``runs
show`` and ``GET /api/runs/{id}`` say which worker does not know which name
since when; the note clears when a worker that knows the workflow runs it.
Checked on every storage backend, and with a real ``pyworkflow worker``.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from pyworkflow import RunStatus, workflow
from pyworkflow.dispatch import activate_run
from pyworkflow.engine import check_replay
from pyworkflow.logs import disable_logging, enable_logging
from pyworkflow.models import Event, EventType, NewEvent, Run, RunPatch, utcnow
from pyworkflow.runtime import Runtime, configure, get_runtime
from pyworkflow.server import create_app
from pyworkflow.testing.fixtures import require_server
from pyworkflow.testing.servers import PostgresServer, RedisServer, wait_for
from pyworkflow.unknown_workflow import unknown_notes

FAST = {"poll_interval": 0.05, "lease_seconds": 2.0, "drain_timeout": 2.0}


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = require_server(lambda: RedisServer(tmp_path_factory.mktemp("redis"), aof=True))
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    server = require_server(lambda: PostgresServer(fsync=False))
    yield server.url
    server.destroy()


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        "file",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every backend: the note is an ordinary event appended through ``append_events``."""
    kind = request.param
    if kind == "memory":
        url = "memory://"
    elif kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'pw.db'}"
    elif kind == "file":
        url = f"file://{tmp_path / 'runs'}"
    elif kind == "redis":
        url = f"{request.getfixturevalue('redis_url')}?prefix=t{uuid.uuid4().hex[:12]}"
    else:
        url = request.getfixturevalue("postgres_url")
    configure(storage=url, embedded_worker=False, **FAST)
    return url


@pytest.fixture
def log() -> Iterator[io.StringIO]:
    sink = io.StringIO()
    enable_logging("DEBUG", sink=sink)
    yield sink
    disable_logging()


def create_run(runtime: Runtime, name: str) -> str:
    """A due run of workflow ``name``, written straight to storage (nothing registers it)."""
    now = utcnow()
    run = Run(
        run_id=uuid.uuid4().hex,
        workflow_name=name,
        status=RunStatus.PENDING,
        input=runtime.serializer.dumps({"args": (), "kwargs": {}}),
        serializer=runtime.serializer.name,
        created_at=now,
        updated_at=now,
        wake_at=now,
    )
    started = NewEvent(EventType.WORKFLOW_STARTED, None, {"workflow": name, "version": None})
    runtime.call(runtime.storage.create_run, run, [started])
    return run.run_id


def events_of(runtime: Runtime, run_id: str) -> list[Event]:
    return runtime.call(runtime.storage.get_events, run_id)


def meet(runtime: Runtime, run_id: str, owner: str) -> None:
    """Make the run due now (undoing the back-off) and let worker ``owner`` claim it."""
    run = runtime.call(runtime.storage.get_run, run_id)
    patch = RunPatch(set_wake=True, wake_at=utcnow())
    runtime.call(runtime.storage.append_events, run_id, run.last_seq, [], patch)
    assert runtime.call(activate_run, runtime, run_id, owner)


def api_run(run_id: str) -> Any:
    """``GET /api/runs/{run_id}`` of the HTTP server's app."""

    async def get() -> Any:
        transport = httpx.ASGITransport(app=create_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://pyworkflow") as http:
            response = await http.get(f"/api/runs/{run_id}")
            assert response.status_code == 200, response.text
            return response.json()

    return anyio.run(get)


def warnings_about(log: io.StringIO, name: str) -> list[str]:
    return [
        line for line in log.getvalue().splitlines() if "WARNING" in line and repr(name) in line
    ]


def test_unknown_workflow_waits_visibly_and_the_note_clears(storage: str, log: io.StringIO) -> None:
    runtime = get_runtime()
    name = f"ghost_{uuid.uuid4().hex[:8]}"
    first, second = create_run(runtime, name), create_run(runtime, name)
    owner = f"{socket.gethostname()}:{os.getpid()}:abc123"
    for _ in range(3):  # polls of one worker: one note, one warning
        meet(runtime, first, owner)
    meet(runtime, second, owner)

    since = {}
    for run_id in (first, second):
        run = runtime.call(runtime.storage.get_run, run_id)
        assert run.status == RunStatus.PENDING  # waiting, not failed
        types = [e.type for e in events_of(runtime, run_id)]
        assert types == [EventType.WORKFLOW_STARTED, EventType.WORKFLOW_UNKNOWN]
        [note] = unknown_notes(events_of(runtime, run_id))
        assert (note.workflow, note.worker) == (name, owner)
        assert (note.host, note.pid) == (socket.gethostname(), os.getpid())
        since[run_id] = note.since.isoformat()
    assert len(warnings_about(log, name)) == 1, log.getvalue()
    assert "not failed" in warnings_about(log, name)[0]

    body = api_run(first)
    assert body["status"] == "pending"
    [shown] = body["unknown_workflow"]
    assert shown["workflow"] == name and shown["worker"] == owner
    assert shown["host"] == socket.gethostname() and shown["pid"] == os.getpid()
    assert shown["since"] == since[first]

    # a deploy brings a worker that knows the workflow: it runs, the note clears
    @workflow(name=name)
    async def ghost() -> str:
        return "here at last"

    meet(runtime, first, "knowing-worker:1:def456")
    run = runtime.call(runtime.storage.get_run, first)
    assert run.status == RunStatus.COMPLETED
    events = events_of(runtime, first)
    assert EventType.WORKFLOW_UNKNOWN in [e.type for e in events]  # history is kept
    assert unknown_notes(events) == []
    assert api_run(first)["unknown_workflow"] == []
    assert len(api_run(second)["unknown_workflow"]) == 1
    # the note is not a decision of the workflow: replay ignores it
    report = runtime.call(check_replay, runtime, first)
    assert report.deterministic, report.message


def _cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    return subprocess.run(
        [sys.executable, "-m", "pyworkflow", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


@pytest.mark.slow
def test_a_worker_process_notes_the_unknown_workflow_once(tmp_path: Path) -> None:
    db = tmp_path / "pw.db"
    url = f"sqlite:///{db}"
    configure(storage=url, embedded_worker=False)
    runtime = get_runtime()
    name = f"ghost_{uuid.uuid4().hex[:8]}"
    runs = [create_run(runtime, name) for _ in range(2)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env.update(PYWORKFLOW_STORAGE=url, PYWORKFLOW_POLL_INTERVAL="0.05")
    stderr = tmp_path / "worker.log"
    with stderr.open("w") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "pyworkflow", "--log-level", "INFO", "worker"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:

        def noted() -> bool:
            return all(unknown_notes(events_of(runtime, run_id)) for run_id in runs)

        wait_for(noted, 60, "the worker to note both runs")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    lines = stderr.read_text().splitlines()
    warned = [line for line in lines if "WARNING" in line and repr(name) in line]
    assert len(warned) == 1, lines  # one per name, not one per run or poll
    for run_id in runs:
        [note] = unknown_notes(events_of(runtime, run_id))
        assert note.pid == worker.pid and note.workflow == name

    shown = json.loads(_cli(tmp_path, "--storage", url, "runs", "show", runs[0], "--json").stdout)
    assert shown["status"] == "pending"
    [note_data] = shown["unknown_workflow"]
    assert note_data["pid"] == worker.pid and note_data["workflow"] == name
    human = _cli(tmp_path, "--storage", url, "runs", "show", runs[0]).stdout
    assert f"waiting: workflow {name!r} is unknown to worker" in human
    assert f"pid {worker.pid}" in human and "since" in human

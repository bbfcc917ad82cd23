"""A real uvicorn server on 127.0.0.1 (free port) in a background thread, per test."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

import pyworkflow
from pyworkflow import EventType, RunStatus, get_events, get_run
from pyworkflow.models import Event
from pyworkflow.server import create_app
from tests.conftest import FAST

ServerFactory = Callable[..., str]


def _serve(app: Any) -> tuple[str, uvicorn.Server, threading.Thread, socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit TCP_NODELAY; without it a keep-alive request waits ~40 ms
    # on Nagle and delayed ACKs (uvicorn sets it only on sockets it binds itself)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        assert time.monotonic() < deadline, "uvicorn did not start in 10 s"
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}", server, thread, sock


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """``make_server(api_token=..., max_body_bytes=..., storage=...)`` -> base URL.

    Configures the runtime (fast polling, ``public_url`` = the server's URL)
    and starts uvicorn; every server is stopped when the test ends.
    """
    started: list[tuple[uvicorn.Server, threading.Thread, socket.socket]] = []

    def factory(
        *,
        api_token: str | None = None,
        max_body_bytes: int | None = None,
        storage: str = "memory://",
        **settings: Any,
    ) -> str:
        app = create_app(api_token=api_token, max_body_bytes=max_body_bytes)
        url, server, thread, sock = _serve(app)
        started.append((server, thread, sock))
        pyworkflow.configure(storage=storage, public_url=url, **{**FAST, **settings})
        return url

    yield factory
    for server, thread, sock in started:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def server(make_server: ServerFactory) -> str:
    """A server on in-memory storage, no API token, default size limit."""
    return make_server()


#: A valid API token for tests (at least 16 characters).
TOKEN = "t0ken-for-the-tests-0123"
#: What a JSON client sends: every POST must say it is JSON (the CSRF guard).
JSON = {"content-type": "application/json"}


@pytest.fixture
def http(server: str) -> Iterator[httpx.Client]:
    """A client whose requests say ``Content-Type: application/json`` unless told otherwise."""
    with httpx.Client(base_url=server, timeout=10, headers=JSON) as client:
        yield client


def wait_status(run_id: str, status: RunStatus, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (current := get_run(run_id).status) != status:
        assert time.monotonic() < deadline, f"run {run_id} is {current}, not {status}"
        time.sleep(0.02)


def wait_for(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def received(run_id: str) -> list[Event]:
    return [e for e in get_events(run_id) if e.type == EventType.HOOK_RECEIVED]


def hook_created(run_id: str) -> bool:
    return any(e.type == EventType.HOOK_CREATED for e in get_events(run_id))

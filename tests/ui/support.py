"""Helpers of the browser tests: the served app's handle, the session cookie, waits, screenshots."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import httpx

import pyworkflow
from pyworkflow.client import RunInfo
from pyworkflow.models import Event, EventType, RunPage, RunStatus
from pyworkflow.testing.servers import free_port, wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
#: Where the tests write the screenshots docs/ui.md shows.
IMAGES = ROOT / "docs" / "images"
T = TypeVar("T")


def session_cookie(token: str) -> str:
    """The value of the ``pyworkflow_ui`` cookie for ``token`` (the contract of ui/auth.py)."""
    return hmac.new(token.encode(), b"pyworkflow-ui-session", hashlib.sha256).hexdigest()


@contextmanager
def serve(
    directory: Path, storage: str, token: str | None, *, worker: bool = True
) -> Iterator[Served]:
    """``python -m pyworkflow serve`` on a free loopback port, stopped on exit.

    Its embedded worker (unless ``worker`` is false) runs ``tests.ui.ui_flows``.
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.update(PYWORKFLOW_POLL_INTERVAL="0.1", PYWORKFLOW_LEASE_SECONDS="5")
    log = directory / f"serve-{port}.log"
    command = [
        sys.executable, "-m", "pyworkflow", "--storage", storage, "--log-level", "INFO",
        "serve", "--port", str(port), "--module", "tests.ui.ui_flows",
        *(["--api-token", token] if token else []), *([] if worker else ["--no-worker"]),
    ]  # fmt: skip
    with open(log, "w") as sink:
        process = subprocess.Popen(
            command, cwd=directory, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"pyworkflow serve exited: {log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{url}/openapi.json", timeout=2).is_success
        except httpx.TransportError:
            return False

    gates = directory / "gates"
    gates.mkdir(exist_ok=True)
    try:
        wait_for(answers, 60, "pyworkflow serve to answer", interval=0.1)
        yield Served(url=url, storage=storage, token=token, log=log, gates=gates)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@attrs.frozen
class Served:
    """The running ``pyworkflow serve``: its URL, storage, token and log."""

    url: str
    storage: str
    token: str | None
    log: Path
    gates: Path

    def log_text(self) -> str:
        return self.log.read_text()[-4000:]


class Client:
    """The sync client API, called from a thread of its own.

    Playwright's sync API keeps its event loop running in the test's thread, and
    PyWorkflow's sync functions refuse to run under a running loop: each call
    here runs in a one-thread pool instead.
    """

    def __init__(self, served: Served) -> None:
        self.served = served
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ui-tests-client")

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._pool.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        self._pool.shutdown()

    def start(self, workflow: Any, *args: Any, idempotency_key: str | None = None) -> str:
        return self.call(pyworkflow.start_workflow, workflow, args, idempotency_key=idempotency_key)

    def get(self, run_id: str) -> RunInfo:
        return self.call(pyworkflow.get_run, run_id)

    def events(self, run_id: str) -> list[Event]:
        return self.call(pyworkflow.get_events, run_id)

    def events_of(self, run_id: str, kind: EventType) -> list[Event]:
        return [e for e in self.events(run_id) if e.type == kind]

    def result(self, run_id: str) -> Any:
        return self.call(pyworkflow.get_result, run_id, 30)

    def cancel(self, run_id: str) -> bool:
        return self.call(pyworkflow.cancel, run_id)

    def resume_hook(self, token: str, payload: Any) -> str:
        return self.call(pyworkflow.resume_hook, token, payload)

    def list(self, **filters: Any) -> RunPage:
        return self.call(pyworkflow.list_runs, **filters)

    def wait(self, run_id: str, *statuses: RunStatus, timeout: float = 60) -> RunInfo:
        """Poll the run until its status is one of ``statuses``; returns its RunInfo."""

        def reached() -> RunInfo | None:
            info = self.get(run_id)
            return info if info.status in statuses else None

        wanted = [s.value for s in statuses]
        return wait_for(reached, timeout, f"run {run_id} to be {wanted}", 0.1)


def screenshot(page: Page, name: str) -> Path:
    """Write ``docs/images/<name>`` (1280x800, overwritten on each run)."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    path = IMAGES / name
    page.screenshot(path=str(path))
    return path

"""A worker SIGKILLed inside a shielded cleanup, or right after a hook timed out, is replaced.

The next worker replays the log: the shield is open when replay reaches the
cancellations, so the cleanup goes on (the killed step runs again, then the
next one) and the run ends ``cancelled``; the hook's timeout is read back
from the log and the same branch is taken.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pyworkflow
from pyworkflow import EventType, RunStatus, WorkflowCancelledError, get_events, get_run, runtime
from pyworkflow.client import check_replay
from pyworkflow.testing.workers import WorkerProcesses

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def wait_for(predicate: object, what: str, limit: float = 60.0) -> None:
    assert callable(predicate)
    give_up = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < give_up, f"still waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[WorkerProcesses]:
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    workers = WorkerProcesses(
        url,
        tmp_path,
        modules="shieldprocflows",
        pythonpath=HERE,
        settings={"PYWORKFLOW_LEASE_SECONDS": "2", "PYWORKFLOW_POLL_INTERVAL": "0.1"},
    )
    runtime.reset()
    pyworkflow.configure(storage=url, embedded_worker=False)
    yield workers
    workers.stop_all()
    runtime.reset()


def test_a_crash_inside_a_shielded_cleanup_continues_the_cleanup(
    pool: WorkerProcesses, tmp_path: Path
) -> None:
    from tests import shieldprocflows as flows

    saga_marks, hook_marks = tmp_path / "saga.marks", tmp_path / "hook.marks"
    pool.start("w1")
    saga = pyworkflow.start(flows.sp_saga, str(saga_marks))
    token = f"sp-{time.monotonic_ns()}"
    hooked = pyworkflow.start(flows.sp_hook_timeout, str(hook_marks), token)
    wait_for(
        lambda: any(e.type == EventType.WAIT_CREATED for e in get_events(saga)), "the saga's sleep"
    )
    assert pyworkflow.cancel(saga) is True
    wait_for(lambda: "refund 1" in lines(saga_marks), "the first compensation to run")
    wait_for(lambda: "after 1" in lines(hook_marks), "the step after the hook's timeout")
    pool.kill("w1")  # inside the shield, and right after the timer fired
    assert pyworkflow.cancel(saga, reason="again, while nobody runs it") is True
    pool.start("w2")

    with pytest.raises(WorkflowCancelledError):
        pyworkflow.get_result(saga, timeout=60)
    assert lines(saga_marks) == ["book 1", "refund 1", "refund 2", "release 1"]
    events = get_events(saga)
    kinds = [e.type for e in events]
    assert kinds.count(EventType.CANCEL_REQUESTED) == 2
    completed = [e.payload["name"] for e in events if e.type == EventType.STEP_COMPLETED]
    assert completed == ["sp_book", "sp_refund", "sp_release"]
    assert kinds[-1] == EventType.WORKFLOW_CANCELLED
    assert get_run(saga).status == RunStatus.CANCELLED
    assert check_replay(saga).deterministic

    assert pyworkflow.get_result(hooked, timeout=60) == "went on"
    assert lines(hook_marks) == ["after 1", "after 2"]
    hook_events = get_events(hooked)
    fired = [e for e in hook_events if e.type == EventType.WAIT_COMPLETED]
    assert [e.payload["name"] for e in fired] == ["hook_timeout"]  # fired once, replayed after
    assert check_replay(hooked).deterministic

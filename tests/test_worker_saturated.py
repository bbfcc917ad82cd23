"""A worker with every slot taken waits for a slot; it does not spin on its claim loop.

(Found while measuring the Ray executor: a worker at ``worker_concurrency`` skipped the
pass that fires schedules, so its next schedule check stayed in the past and every
sleep of the loop was zero: thousands of passes a second, each a storage query.)
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import pyworkflow
from pyworkflow import runtime, start, step, workflow
from pyworkflow.executors import local

_release = threading.Event()


@step()
def sat_hold(n: int) -> int:
    """Blocks (in a worker thread) until the test lets every step go."""
    _release.wait(30)
    return n


@workflow
async def sat_flow(n: int) -> int:
    return await sat_hold(n)


def test_a_saturated_worker_waits_instead_of_spinning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes = 0
    original = local.Worker._sleep_time

    async def counted(self: local.Worker) -> float:
        nonlocal passes
        passes += 1
        return await original(self)

    monkeypatch.setattr(local.Worker, "_sleep_time", counted)
    _release.clear()
    try:
        runtime.configure(
            storage=f"sqlite:///{tmp_path / 'runs.db'}", worker_concurrency=2, poll_interval=0.2
        )
        run_ids = [start(sat_flow, n) for n in range(4)]  # two run, two wait for a slot
        deadline = time.monotonic() + 20
        while len(runtime.get_runtime().executor.worker.active) < 2:  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "the worker never filled its two slots"
            time.sleep(0.01)
        before = passes
        time.sleep(1.0)  # saturated: at most a pass per poll interval (0.2 s), plus wake-ups
        during = passes - before
        _release.set()
        assert [pyworkflow.get_result(r, timeout=30) for r in run_ids] == [0, 1, 2, 3]
    finally:
        _release.set()
        runtime.reset()
    assert during <= 20, f"{during} claim-loop passes in 1 s while saturated: the loop spins"

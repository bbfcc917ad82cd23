"""``runs show`` names dispatched steps still waiting for a worker, and what they asked for.

A step dispatched to other workers (Celery, Ray) records ``step_scheduled``;
until some worker records ``step_started`` it waits, and on Ray a step that
asks for a resource no node has waits for good: ``runs show`` says so, with
the resources recorded in ``step_scheduled``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyworkflow import EventType, get_events, runtime, start, step, workflow
from pyworkflow.testing.engine_suite import FAST

from .dispatching import InProcessDispatch, dispatching_executor  # noqa: F401  # fixture

pytestmark = pytest.mark.usefixtures("dispatching_executor")


@step(resources={"num_gpus": 1, "big_disk": 2})
async def on_gpu(x: int) -> int:
    return x


@step()
async def anywhere(x: int) -> int:
    return x


@workflow
async def waits_for_gpu() -> list[int]:
    return list(await asyncio.gather(on_gpu(1), anywhere(2)))


def _show(db: Path, run_id: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env["PYWORKFLOW_STORAGE"] = f"sqlite:///{db}"
    out = subprocess.run(
        [sys.executable, "-m", "pyworkflow", "runs", "show", run_id],
        cwd=db.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_runs_show_names_scheduled_steps_and_their_resources(tmp_path: Path) -> None:
    db = tmp_path / "pw.db"
    runtime.configure(storage=f"sqlite:///{db}", executor="inprocess-dispatch", **FAST)
    InProcessDispatch.drop_steps = 1  # the first step message is lost: on_gpu never starts
    try:
        run_id = start(waits_for_gpu)
        deadline = time.monotonic() + 20
        while True:
            events = get_events(run_id)
            if any(e.type == EventType.STEP_COMPLETED for e in events):
                break
            assert time.monotonic() < deadline, events
            time.sleep(0.05)
    finally:
        InProcessDispatch.drop_steps = 0
    scheduled = {e.payload["name"]: e.payload for e in events if e.type == EventType.STEP_SCHEDULED}
    assert scheduled["on_gpu"]["resources"] == {"num_gpus": 1.0, "big_disk": 2.0}
    assert "resources" not in scheduled["anywhere"]  # none asked: the payload is unchanged
    gpu_id = next(e.correlation_id for e in events if e.type == EventType.STEP_SCHEDULED)
    runtime.shutdown()
    out = " ".join(_show(db, run_id).split())
    assert f"step on_gpu ({gpu_id}) waits for a worker that has num_gpus=1, big_disk=2" in out
    assert "step anywhere" not in out  # it started (and completed): not waiting

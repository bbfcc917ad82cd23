"""An activation's Ray task cancelled, or failing, as the sending worker sees it.

A worker cancels the task when it loses the run's lease or stops (drain timeout):
``ray.cancel`` interrupts the task, which cancels the activation running on the Ray
worker's PyWorkflow loop, so its step is interrupted and the run's lease released,
instead of the activation going on unseen. Here this process plays the worker: it
claims the run, sends the task and cancels it. A task that fails (here: the workflow
modules do not import in the Ray worker) backs the run off instead of being sent again at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import ray_flows as flows
from ray_cluster import RAY_ENV, RayCluster, disconnect_from_ray
from ray_support import ray_driver

from pyworkflow import EventType, get_events, runtime, start
from pyworkflow.models import Run, utcnow
from pyworkflow.testing.servers import wait_for


@pytest.fixture
def driver(
    ray_cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    # no embedded worker: nobody claims but the test
    with ray_driver(ray_cluster, tmp_path, monkeypatch, embedded_worker=False):
        yield


def test_cancelling_the_task_interrupts_the_step_and_releases_the_lease(
    driver: None, tmp_path: Path
) -> None:
    import ray
    from pyworkflow_ray.executor import connect
    from pyworkflow_ray.tasks import run_activation

    log = str(tmp_path / "calls.log")
    run_id = start(flows.haul_flow, log)
    live = runtime.get_runtime()
    executor = live.executor
    connect(executor.options)  # type: ignore[attr-defined]
    claimed = live.call(live.storage.claim_runs, "test-worker", utcnow(), 10, timedelta(minutes=5))
    assert [run.run_id for run in claimed] == [run_id]

    ref = run_activation.options(runtime_env=executor.runtime_env).remote(  # type: ignore[attr-defined]
        run_id, "test-worker"
    )
    wait_for(lambda: "haul" in flows.executions(log), 90, "the step to start in a Ray worker")
    ray.cancel(ref)
    # the activation was cancelled in the Ray worker: its step interrupted there...
    wait_for(lambda: "interrupted" in flows.executions(log), 60, "the step's interruption")
    ran = flows.lines(log)
    assert [f[0] for f in ran] == ["haul", "interrupted"] and ran[0][2] == ran[1][2]
    # ...and the run's lease released (not left to expire in five minutes)
    wait_for(lambda: live.call(live.storage.get_run, run_id).lease_owner is None, 30, "release")
    events = get_events(run_id)
    started = [e for e in events if e.type == EventType.STEP_STARTED]
    assert len(started) == 1
    assert not [e for e in events if e.type in (EventType.STEP_COMPLETED, EventType.STEP_FAILED)]


def test_an_activation_task_that_cannot_import_the_workflows_backs_the_run_off(
    ray_cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module only this process can import: every Ray activation task fails. The run is
    backed off (tried again after a pause), not sent again and again in a loop."""
    import sys
    import types

    import pyworkflow

    for key, value in RAY_ENV.items():
        monkeypatch.setenv(key, value)
    # in this process's sys.modules only: not a file on a path Ray could pass on
    monkeypatch.setitem(sys.modules, "only_here", types.ModuleType("only_here"))
    lines: list[str] = []
    handler = pyworkflow.enable_logging("WARNING", sink=lines.append)
    runtime.reset()
    runtime.configure(
        storage=f"sqlite:///{tmp_path / 'runs.db'}",
        executor="ray",
        modules=["ray_flows", "only_here"],  # the Ray workers cannot import only_here
        ray={"address": ray_cluster.address},
        poll_interval=0.1,
    )
    try:
        run_id = start(flows.GreetWorkflow, "nobody")
        wait_for(
            lambda: any("activation's Ray task failed" in line for line in lines),
            90,
            "the failed activation task",
        )
        run = live_run(run_id)
        assert run.status.value == "pending" and run.lease_owner is None
        assert run.wake_at is not None and run.wake_at > utcnow()  # backed off: due later
        failures = [line for line in lines if "activation's Ray task failed" in line]
        assert "only_here" in failures[0]  # the error says what could not be imported
        assert len(failures) == 1  # not sent again at once
        assert "only_here" in sys.modules  # (this process could import it)
    finally:
        pyworkflow.disable_logging(handler)
        runtime.reset()
        disconnect_from_ray()


def live_run(run_id: str) -> Run:
    live = runtime.get_runtime()
    return live.call(live.storage.get_run, run_id)

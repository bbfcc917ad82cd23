"""A step asking for a resource no node has waits, and ``runs show`` says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ray_flows as flows
from ray_cluster import RayCluster

from pyworkflow import EventType, RunStatus, cancel, get_events, get_run, start
from pyworkflow.testing.servers import wait_for
from pyworkflow.testing.workers import WorkerProcesses


def runs_show(storage_url: str, run_id: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env["PYWORKFLOW_STORAGE"] = storage_url
    out = subprocess.run(
        [sys.executable, "-m", "pyworkflow", "runs", "show", run_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=True,
    )
    return out.stdout


def test_a_step_no_node_can_take_waits_visibly(
    ray_cluster: RayCluster, workers: WorkerProcesses, tmp_path: Path
) -> None:
    workers.start("w1")
    log = tmp_path / "calls.log"
    run_id = start(flows.tpu_flow, str(log))

    # its companion, dispatched in the same batch, is taken by a node and runs
    wait_for(lambda: "anywhere" in flows.executions(log), 60, "the placeable step to run")
    wait_for(
        lambda: EventType.STEP_COMPLETED in [e.type for e in get_events(run_id)],
        60,
        "the placeable step to complete",
    )
    shown = wait_for(
        lambda: (
            "waits for a worker" in (text := runs_show(workers.storage_url, run_id, tmp_path))
            and text
        ),
        60,
        "runs show to name the waiting step",
    )
    assert "step ray_on_a_tpu" in shown and "that has tpu=1" in shown, shown
    assert "step ray_anywhere" not in shown
    events = get_events(run_id)
    scheduled = {e.payload["name"]: e for e in events if e.type == EventType.STEP_SCHEDULED}
    assert scheduled["ray_on_a_tpu"].payload["resources"] == {"tpu": 1}
    started = [e.payload["name"] for e in events if e.type == EventType.STEP_STARTED]
    assert started == ["ray_anywhere"]
    assert flows.executions(log) == ["anywhere"]  # the tpu step's body never ran anywhere
    assert get_run(run_id).status == RunStatus.SUSPENDED

    assert cancel(run_id) is True
    wait_for(lambda: get_run(run_id).status == RunStatus.CANCELLED, 60, "the run to end")

"""Step checkpoints written in Ray worker processes (issue 20): inline and dispatched steps."""

from __future__ import annotations

import os
from pathlib import Path

from ray_checkpoint_flows import attempts, ray_resumables
from ray_cluster import RayCluster

from pyworkflow import get_result, start
from pyworkflow.testing.workers import WorkerProcesses


def test_a_checkpoint_written_in_a_ray_worker_is_seen_by_the_next_attempt(
    ray_cluster: RayCluster, workers: WorkerProcesses, tmp_path: Path
) -> None:
    workers.modules = "ray_checkpoint_flows"
    workers.start("w1")
    log = tmp_path / "attempts.log"
    # checkpoint_interval is the default (1 s): attempt 1 writes its first checkpoint,
    # keeps the later ones in memory, and writes the last (40) when it fails
    run_id = start(ray_resumables, str(log), 100, 40)
    assert get_result(run_id, timeout=120) == [100, 100, 100]
    rows = attempts(log)
    assert sorted((name, attempt, begin) for name, attempt, begin, _ in rows) == [
        ("a", 1, 0),
        ("a", 2, 40),
        ("b", 1, 0),
        ("b", 2, 40),
        ("inline", 1, 0),
        ("inline", 2, 40),
    ]
    assert os.getpid() not in {pid for *_, pid in rows}

"""A real Ray cluster for the Ray plugin's tests: one per test session, two nodes.

See :mod:`ray_cluster`. The cluster's start time is written to the session's
log (``-s`` or the temp dir's ``cluster.json``) for the figures of the report.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray_cluster import RayCluster, disconnect_from_ray
from ray_support import ray_workers

from pyworkflow import runtime
from pyworkflow.testing.fixtures import isolated_runtime  # noqa: F401  (autouse)
from pyworkflow.testing.workers import WorkerProcesses


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    cluster = RayCluster(tmp_path_factory.mktemp("ray"))
    try:
        cluster.start()
        (cluster.temp_dir / "cluster.json").write_text(
            json.dumps({"start_seconds": cluster.start_seconds, "nodes": cluster.nodes})
        )
        yield cluster
    finally:
        disconnect_from_ray()
        cluster.stop()


@pytest.fixture
def workers(ray_cluster: RayCluster, tmp_path: Path) -> Iterator[WorkerProcesses]:
    """Worker processes on a fresh SQLite file (started by each test); this process a client."""
    storage_url = f"sqlite:///{tmp_path / 'pw.db'}"
    pool = ray_workers(ray_cluster, tmp_path, storage_url)
    runtime.configure(storage=storage_url, embedded_worker=False, poll_interval=0.1)
    try:
        yield pool
    finally:
        runtime.reset()
        pool.stop_all()

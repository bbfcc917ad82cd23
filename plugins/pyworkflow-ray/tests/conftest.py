"""A real Ray cluster for the Ray plugin's tests: one per test session, two nodes.

See :mod:`ray_cluster`. The cluster's start time is written to the session's
log (``-s`` or the temp dir's ``cluster.json``) for the figures of the report.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from ray_cluster import RayCluster

from pyworkflow.testing.fixtures import isolated_runtime  # noqa: F401  (autouse)


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
        cluster.stop()

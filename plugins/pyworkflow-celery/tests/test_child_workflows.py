"""Child workflows on real Celery worker processes (issue 15).

The engine conformance cases for children (``pyworkflow.testing.suite_children``)
run here with every activation and step on two Celery workers: parents and
children are activated by whichever worker takes the message, and each child's
end reaches its parent through the shared storage and the broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from celery_support import FAST, HERE, client_settings
from pyworkflow_celery.testing import CeleryCluster, RedisServer

from pyworkflow import runtime
from pyworkflow.testing.suite_children import ChildrenCases


class TestChildrenOnCeleryWorkers(ChildrenCases):
    """Every child-workflow conformance case, on a two-worker Celery cluster over SQLite."""

    @pytest.fixture
    def pw(self, redis_server: RedisServer, tmp_path: Path) -> Iterator[str]:
        redis_server.client().flushall()
        storage_url = f"sqlite:///{tmp_path / 'pw.db'}"
        cluster = CeleryCluster(
            tmp_path,
            redis_server.url,
            storage_url,
            modules="pyworkflow.testing.suite_children",
            pythonpath=HERE,
            settings=FAST,
        )
        cluster.worker("w1", concurrency=4)
        cluster.worker("w2", concurrency=4)
        runtime.reset()
        runtime.configure(**client_settings(redis_server.url, storage_url))
        try:
            yield storage_url
        finally:
            runtime.reset()
            cluster.stop_all()

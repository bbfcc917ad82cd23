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
from celery_support import suite_cluster
from pyworkflow_celery.testing import RedisServer

from pyworkflow.testing.suite_children import ChildrenCases


class TestChildrenOnCeleryWorkers(ChildrenCases):
    """Every child-workflow conformance case, on a two-worker Celery cluster over SQLite."""

    @pytest.fixture
    def pw(self, redis_server: RedisServer, tmp_path: Path) -> Iterator[str]:
        with suite_cluster(redis_server, tmp_path, "pyworkflow.testing.suite_children") as url:
            yield url

"""Continue-as-new on real Celery worker processes (issue 15).

The engine conformance cases of ``suite_continuation`` run here with every
activation and step on two Celery workers, as ``test_child_workflows.py`` runs
the child cases and ``test_workflow_timeouts.py`` the timeouts. (The
``suite_patching`` cases simulate a deploy by changing code in the test's own
process, which worker processes cannot see; ``tests/test_patching.py`` deploys
to real worker processes instead.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from celery_support import suite_cluster
from pyworkflow_celery.testing import RedisServer

from pyworkflow.testing.suite_continuation import ContinueAsNewCases


class TestContinueAsNewOnCeleryWorkers(ContinueAsNewCases):
    """Every continue-as-new conformance case, on a two-worker Celery cluster over SQLite."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def pw(self, redis_server: RedisServer, tmp_path: Path) -> Iterator[str]:
        with suite_cluster(redis_server, tmp_path, "pyworkflow.testing.suite_continuation") as url:
            yield url

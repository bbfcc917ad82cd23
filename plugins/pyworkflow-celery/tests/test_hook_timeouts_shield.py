"""Hook timeouts and ``shield()`` on real Celery worker processes (issue 20).

The engine conformance cases of ``suite_hook_timeouts`` and ``suite_shield`` run
here with every activation and step on two Celery workers, as
``test_continue_as_new.py`` runs the continue-as-new cases: the hook's timer
arrives as an ``eta`` activation, and cancellations reach a shielded cleanup
whose steps run on another worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from celery_support import suite_cluster
from pyworkflow_celery.testing import RedisServer

from pyworkflow.testing.suite_hook_timeouts import HookTimeoutCases
from pyworkflow.testing.suite_shield import ShieldCases


class TestHookTimeoutsOnCeleryWorkers(HookTimeoutCases):
    """Every hook timeout conformance case, on a two-worker Celery cluster over SQLite."""

    @pytest.fixture
    def pw(self, redis_server: RedisServer, tmp_path: Path) -> Iterator[str]:
        with suite_cluster(redis_server, tmp_path, "pyworkflow.testing.suite_hook_timeouts") as url:
            yield url


class TestShieldOnCeleryWorkers(ShieldCases):
    """Every ``shield()`` conformance case, on a two-worker Celery cluster over SQLite."""

    @pytest.fixture
    def pw(self, redis_server: RedisServer, tmp_path: Path) -> Iterator[str]:
        with suite_cluster(redis_server, tmp_path, "pyworkflow.testing.suite_shield") as url:
            yield url

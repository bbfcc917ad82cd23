"""A step's checkpoint across a worker SIGKILL on one Redis (issue 20).

The check of :mod:`pyworkflow.testing.checkpointchecks` on this plugin's server
(a fresh key prefix per test); SQLite and PostgreSQL run the same one.
"""

from __future__ import annotations

import pytest

from pyworkflow.testing.suite_checkpoint_processes import CheckpointProcessCases


class TestRedisCheckpoints(CheckpointProcessCases):
    @pytest.fixture
    def flow_url(self, redis_url: str) -> str:
        return redis_url

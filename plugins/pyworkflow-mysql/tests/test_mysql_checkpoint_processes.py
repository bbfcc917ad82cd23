"""A step's checkpoint across a worker SIGKILL on one MariaDB database (issue 20).

The check of :mod:`pyworkflow.testing.checkpointchecks` on this plugin's server
(a fresh database per test); SQLite, Redis and PostgreSQL run the same one.
"""

from __future__ import annotations

import pytest

from pyworkflow.testing.suite_checkpoint_processes import CheckpointProcessCases


class TestMySQLCheckpoints(CheckpointProcessCases):
    @pytest.fixture
    def flow_url(self, database_url: str) -> str:
        return database_url

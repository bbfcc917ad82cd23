"""A step's checkpoint across a worker SIGKILL on one PostgreSQL database (issue 20).

The check of :mod:`pyworkflow.testing.checkpointchecks` on this plugin's server
(a fresh schema per test); SQLite and Redis run the same one.
"""

from __future__ import annotations

import pytest

from pyworkflow.testing.suite_checkpoint_processes import CheckpointProcessCases


class TestPostgresCheckpoints(CheckpointProcessCases):
    @pytest.fixture
    def flow_url(self, schema_url: str) -> str:
        return schema_url

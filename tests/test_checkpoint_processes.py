"""A step's checkpoint across a worker SIGKILL on one SQLite file (issue 20).

A step processing 1,000 items is killed at item 600; the next attempt starts
at the last checkpoint (600), not at 0. The same check runs on PostgreSQL and
Redis in those plugins' tests (:mod:`pyworkflow.testing.checkpointchecks`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pyworkflow.testing.suite_checkpoint_processes import CheckpointProcessCases


class TestSQLiteCheckpoints(CheckpointProcessCases):
    @pytest.fixture
    def flow_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'pw.db'}"

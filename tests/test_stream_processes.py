"""Durable streams across a worker SIGKILL on one SQLite file (issue 19).

The same check runs on PostgreSQL and Redis in those plugins' tests
(:mod:`pyworkflow.testing.streamchecks`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pyworkflow.testing.suite_stream_processes import StreamProcessCases


class TestSQLiteStreams(StreamProcessCases):
    @pytest.fixture
    def flow_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'pw.db'}"

"""Durable streams across a worker SIGKILL on one MariaDB database.

The check of :mod:`pyworkflow.testing.streamchecks` on this plugin's server (a
fresh database per test); SQLite, Redis and PostgreSQL run the same one.
"""

from __future__ import annotations

import pytest

from pyworkflow.testing.suite_stream_processes import StreamProcessCases


class TestMySQLStreams(StreamProcessCases):
    @pytest.fixture
    def flow_url(self, database_url: str) -> str:
        return database_url

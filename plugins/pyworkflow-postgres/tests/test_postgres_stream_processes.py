"""Durable streams across a worker SIGKILL on one PostgreSQL database (issue 19).

The check of :mod:`pyworkflow.testing.streamchecks` on this plugin's server (a
fresh schema per test); SQLite and Redis run the same one.
"""

from __future__ import annotations

import pytest

from pyworkflow.testing.suite_stream_processes import StreamProcessCases


class TestPostgresStreams(StreamProcessCases):
    @pytest.fixture
    def flow_url(self, schema_url: str) -> str:
        return schema_url

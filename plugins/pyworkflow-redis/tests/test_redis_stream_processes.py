"""Durable streams across a worker SIGKILL on one Redis (issue 19).

The check of :mod:`pyworkflow.testing.streamchecks` on this plugin's server (a
fresh key prefix per test); SQLite and PostgreSQL run the same one.
"""

from __future__ import annotations

import pytest

from pyworkflow.testing.suite_stream_processes import StreamProcessCases


class TestRedisStreams(StreamProcessCases):
    @pytest.fixture
    def flow_url(self, redis_url: str) -> str:
        return redis_url

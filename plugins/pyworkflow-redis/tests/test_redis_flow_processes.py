"""Schedules and queues with real worker processes on one Redis (issue 16).

The checks of :mod:`pyworkflow.testing.flowchecks`, on this plugin's server
(a fresh key prefix per test); SQLite and PostgreSQL run the same ones.
"""

from __future__ import annotations

import pytest

from pyworkflow.testing.suite_flow_processes import FlowProcessCases


class TestRedisFlows(FlowProcessCases):
    @pytest.fixture
    def flow_url(self, redis_url: str) -> str:
        return redis_url

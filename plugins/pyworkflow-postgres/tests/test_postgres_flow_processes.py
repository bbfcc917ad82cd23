"""Schedules and queues with real worker processes on one PostgreSQL database (issue 16).

The checks of :mod:`pyworkflow.testing.flowchecks`, on this plugin's server
(a fresh schema per test); SQLite and Redis run the same ones.
"""

from __future__ import annotations

import pytest

from pyworkflow.testing.suite_flow_processes import FlowProcessCases


class TestPostgresFlows(FlowProcessCases):
    @pytest.fixture
    def flow_url(self, schema_url: str) -> str:
        return schema_url

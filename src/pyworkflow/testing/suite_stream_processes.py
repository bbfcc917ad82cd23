"""Durable streams with real worker processes and HTTP readers, as one case per backend.

A storage plugin shows that its streams survive a worker crash by subclassing
it and naming the URL::

    class TestRedisStreams(StreamProcessCases):
        @pytest.fixture
        def flow_url(self, redis_url: str) -> str:
            return redis_url
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pyworkflow.testing.streamchecks import stream_across_kill

__all__ = ["StreamProcessCases"]


@pytest.mark.slow
class StreamProcessCases:
    """Subclass it and provide the ``flow_url`` fixture (a storage URL, fresh per test)."""

    @pytest.fixture
    def flow_url(self, tmp_path: Path) -> str:
        """The storage URL the worker processes share; override it."""
        raise NotImplementedError

    def test_1000_chunks_over_http_across_a_worker_kill_and_a_reconnect(
        self, flow_url: str, tmp_path: Path
    ) -> None:
        report = stream_across_kill(flow_url, tmp_path, chunks=1000, kill_at=300)
        print(report.figures)
        assert report.problems == []
        assert report.figures["chunks"] == 1000 and report.figures["reconnects"] == 1

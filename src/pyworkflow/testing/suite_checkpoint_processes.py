"""A step checkpoint across a worker SIGKILL, with real worker processes, as one case per backend.

A storage plugin shows that a step's next attempt resumes from its checkpoint
after a crash by subclassing it and naming the URL::

    class TestRedisCheckpoints(CheckpointProcessCases):
        @pytest.fixture
        def flow_url(self, redis_url: str) -> str:
            return redis_url
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pyworkflow.testing.checkpointchecks import checkpoint_across_kill, checkpoint_across_lease_loss

__all__ = ["CheckpointProcessCases"]


@pytest.mark.slow
class CheckpointProcessCases:
    """Subclass it and provide the ``flow_url`` fixture (a storage URL, fresh per test)."""

    @pytest.fixture
    def flow_url(self, tmp_path: Path) -> str:
        """The storage URL the worker processes share; override it."""
        raise NotImplementedError

    def test_1000_items_resume_after_the_checkpoint_when_the_worker_is_killed_at_600(
        self, flow_url: str, tmp_path: Path
    ) -> None:
        report = checkpoint_across_kill(flow_url, tmp_path, total=1000, kill_at=600)
        assert report.problems == []
        assert report.figures["redone"] == 0
        resumed = report.figures["resumed_at"]
        assert resumed[min(resumed)] == 0 and resumed[max(resumed)] == 600

    def test_a_worker_that_lost_its_lease_cannot_roll_the_checkpoint_back(
        self, flow_url: str, tmp_path: Path
    ) -> None:
        report = checkpoint_across_lease_loss(flow_url, tmp_path, total=200, stop_at=120)
        assert report.problems == []

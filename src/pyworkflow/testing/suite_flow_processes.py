"""The schedule and queue checks with real worker processes, as one suite per backend.

A storage plugin shows that schedules and queues hold across processes on its
store by subclassing it and naming the URL::

    class TestRedisFlows(FlowProcessCases):
        @pytest.fixture
        def flow_url(self, redis_url: str) -> str:
            return redis_url

Each case runs :mod:`pyworkflow.testing.flowchecks` (worker subprocesses on
that URL) and asserts the documented numbers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pyworkflow.testing.flowchecks import (
    queue_concurrency,
    queue_partitions,
    queue_rate,
    schedule_catchup,
    schedule_ticks,
)

__all__ = ["FlowProcessCases"]


@pytest.mark.slow
class FlowProcessCases:
    """Subclass it and provide the ``flow_url`` fixture (a storage URL, fresh per test)."""

    @pytest.fixture
    def flow_url(self, tmp_path: Path) -> str:
        """The storage URL the worker processes share; override it."""
        raise NotImplementedError

    def test_a_one_second_cron_starts_one_run_per_tick_across_a_worker_kill(
        self, flow_url: str, tmp_path: Path
    ) -> None:
        report = schedule_ticks(flow_url, tmp_path, workers=3, seconds=10.0, kill_after=5.0)
        print(report)
        assert report.problems == []
        assert report.figures["ticks"] == report.figures["runs"]

    def test_a_one_second_interval_starts_one_run_per_tick_across_a_worker_kill(
        self, flow_url: str, tmp_path: Path
    ) -> None:
        """``every="1s"``: the interval schedules' once-per-tick guarantee, as the cron one's."""
        report = schedule_ticks(
            flow_url, tmp_path, workers=3, seconds=10.0, kill_after=5.0, interval=True
        )
        print(report)
        assert report.problems == []
        assert report.figures["ticks"] == report.figures["runs"]

    def test_catchup_policies_after_12s_of_downtime(self, flow_url: str, tmp_path: Path) -> None:
        """``none`` starts no missed tick, ``latest`` one, ``all`` each of them (grace 2 s).

        Ticks within 1 s of the boundary (the restart's first firing minus the
        grace) may count either way: the check accepts the runs expected for any
        firing instant in the last second before the first run was created.
        """
        report = schedule_catchup(flow_url, tmp_path, grace=2.0, down=12.0)
        print(report)
        assert report.problems == []
        figures = report.figures
        assert figures["none"]["missed_runs"] == 0
        assert figures["latest"]["missed_runs"] == 1
        assert figures["all"]["missed_runs"] == figures["all"]["missed_ticks"]
        # 12 s of downtime less the grace (2 s) and the boundary second: at least 7 missed ticks
        assert min(figures[p]["missed_ticks"] for p in ("none", "latest", "all")) >= 7

    def test_queue_concurrency_3_over_4_worker_processes(
        self, flow_url: str, tmp_path: Path
    ) -> None:
        report = queue_concurrency(flow_url, tmp_path, workers=4, runs=200, concurrency=3)
        print(report)
        assert report.problems == []
        assert report.figures["completed"] == 200

    def test_queue_rate_20_per_5s_over_15s(self, flow_url: str, tmp_path: Path) -> None:
        report = queue_rate(flow_url, tmp_path, count=20, period=5.0, seconds=15.0)
        print(report)
        assert report.problems == []
        assert report.figures["max_in_window"] <= 21  # 20, plus 1 for clock reads of two processes

    def test_partition_concurrency_1_per_key(self, flow_url: str, tmp_path: Path) -> None:
        report = queue_partitions(flow_url, tmp_path, keys=4, runs_per_key=8)
        print(report)
        assert report.problems == []
        assert all(n == 1 for n in report.figures["max_running_per_key"].values())

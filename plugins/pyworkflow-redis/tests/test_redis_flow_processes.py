"""Schedules and queues with real worker processes on one Redis (issue 16).

The checks of :mod:`pyworkflow.testing.flowchecks`, on this plugin's server
(a fresh key prefix per test); SQLite and PostgreSQL run the same ones.
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

pytestmark = pytest.mark.slow


def test_a_one_second_cron_starts_one_run_per_tick_across_a_worker_kill(
    redis_url: str, tmp_path: Path
) -> None:
    report = schedule_ticks(redis_url, tmp_path, workers=3, seconds=10.0, kill_after=5.0)
    print(f"redis: {report}")
    assert report.problems == []
    assert report.figures["ticks"] == report.figures["runs"]


def test_catchup_policies_after_20s_of_downtime(redis_url: str, tmp_path: Path) -> None:
    """``none`` starts no missed tick, ``latest`` one, ``all`` each of them (grace 2 s).

    Ticks within 1 s of the boundary (the restart's first firing minus the
    grace) may count either way: the check accepts the runs expected for any
    firing instant in the last second before the first run was created.
    """
    report = schedule_catchup(redis_url, tmp_path, grace=2.0, down=20.0)
    print(f"redis: {report}")
    assert report.problems == []
    figures = report.figures
    assert figures["none"]["missed_runs"] == 0
    assert figures["latest"]["missed_runs"] == 1
    assert figures["all"]["missed_runs"] == figures["all"]["missed_ticks"]
    # 20 s of downtime less the grace (2 s) and the boundary second: at least 15 missed ticks
    assert min(figures[p]["missed_ticks"] for p in ("none", "latest", "all")) >= 15


def test_queue_concurrency_3_over_4_worker_processes(redis_url: str, tmp_path: Path) -> None:
    report = queue_concurrency(redis_url, tmp_path, workers=4, runs=200, concurrency=3)
    print(f"redis: {report}")
    assert report.problems == []
    assert report.figures["completed"] == 200


def test_queue_rate_20_per_5s_over_30s(redis_url: str, tmp_path: Path) -> None:
    report = queue_rate(redis_url, tmp_path, count=20, period=5.0, seconds=30.0)
    print(f"redis: {report}")
    assert report.problems == []
    assert report.figures["max_in_window"] <= 21  # 20, plus 1 for clock reads of two processes


def test_partition_concurrency_1_per_key(redis_url: str, tmp_path: Path) -> None:
    report = queue_partitions(redis_url, tmp_path, keys=4, runs_per_key=8)
    print(f"redis: {report}")
    assert report.problems == []
    assert all(n == 1 for n in report.figures["max_running_per_key"].values())

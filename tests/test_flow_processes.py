"""Schedules and queues with real worker processes on one SQLite database (issue 16).

The same checks run on PostgreSQL and Redis in those plugins' tests
(:mod:`pyworkflow.testing.flowchecks`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pyworkflow.testing.flowchecks import (
    catchup_expected,
    max_overlap,
    queue_concurrency,
    queue_partitions,
    queue_rate,
    schedule_catchup,
    schedule_ticks,
    tick_problems,
    window_max,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _at(*seconds: float) -> list[datetime]:
    return [T0 + timedelta(seconds=s) for s in seconds]


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'pw.db'}"


# ----- the checks' own arithmetic -----


def test_tick_problems_name_doubled_and_missing_ticks() -> None:
    assert tick_problems(_at(0, 1, 2, 3)) == []
    doubled, missing = tick_problems(_at(0, 1, 1, 3))
    assert T0.replace(second=1).isoformat() in doubled
    assert T0.replace(second=2).isoformat() in missing


def test_max_overlap_counts_open_intervals_and_not_touching_ones() -> None:
    a, b, c, d = _at(0, 1, 2, 3)
    assert max_overlap([(a, b), (b, c), (c, d)]) == 1  # one ends where the next starts
    assert max_overlap([(a, c), (b, d), (b, c)]) == 3
    assert max_overlap([]) == 0


def test_window_max_finds_the_fullest_half_open_window() -> None:
    times = _at(0, 1, 4.9, 5, 5.5, 9.95)
    assert window_max(times, timedelta(seconds=5)) == (4, T0 + timedelta(seconds=1))  # [1, 6)
    assert window_max([], timedelta(seconds=5)) == (0, None)


@pytest.mark.parametrize(
    ("policy", "missed_runs"), [("none", []), ("latest", [8]), ("all", list(range(9)))]
)
def test_catchup_expectation_per_policy(policy: str, missed_runs: list[int]) -> None:
    # first unfired tick T0, the restart fires at T0 + 10.3 s with a grace of 2 s:
    # ticks 0..8 are missed (10.3 - 8 > 2), 9 and 10 on time, then 11 and 12 fired later
    now, last = T0 + timedelta(seconds=10.3), T0 + timedelta(seconds=12)
    expected, missed = catchup_expected(policy, T0, now, timedelta(seconds=2), last)
    assert missed == _at(*range(9))
    assert expected == set(_at(*missed_runs, 9, 10, 11, 12))


# ----- worker processes on one SQLite database -----


@pytest.mark.slow
def test_a_one_second_cron_starts_one_run_per_tick_across_a_worker_kill(tmp_path: Path) -> None:
    report = schedule_ticks(_url(tmp_path), tmp_path, workers=3, seconds=10.0, kill_after=5.0)
    print(f"sqlite: {report}")
    assert report.problems == []
    assert report.figures["ticks"] == report.figures["runs"]


@pytest.mark.slow
def test_catchup_policies_after_20s_of_downtime(tmp_path: Path) -> None:
    """``none`` starts no missed tick, ``latest`` one, ``all`` each of them (grace 2 s).

    Ticks within 1 s of the boundary (the restart's first firing minus the
    grace) may count either way: the check accepts the runs expected for any
    firing instant in the last second before the first run was created.
    """
    report = schedule_catchup(_url(tmp_path), tmp_path, grace=2.0, down=20.0)
    print(f"sqlite: {report}")
    assert report.problems == []
    figures = report.figures
    assert figures["none"]["missed_runs"] == 0
    assert figures["latest"]["missed_runs"] == 1
    assert figures["all"]["missed_runs"] == figures["all"]["missed_ticks"]
    # 20 s of downtime less the grace (2 s) and the boundary second: at least 15 missed ticks
    assert min(figures[p]["missed_ticks"] for p in ("none", "latest", "all")) >= 15


@pytest.mark.slow
def test_queue_concurrency_3_over_4_worker_processes(tmp_path: Path) -> None:
    report = queue_concurrency(_url(tmp_path), tmp_path, workers=4, runs=200, concurrency=3)
    print(f"sqlite: {report}")
    assert report.problems == []
    assert report.figures["completed"] == 200


@pytest.mark.slow
def test_queue_rate_20_per_5s_over_30s(tmp_path: Path) -> None:
    report = queue_rate(_url(tmp_path), tmp_path, count=20, period=5.0, seconds=30.0)
    print(f"sqlite: {report}")
    assert report.problems == []
    assert report.figures["max_in_window"] <= 21  # 20, plus 1 for clock reads of two processes


@pytest.mark.slow
def test_partition_concurrency_1_per_key(tmp_path: Path) -> None:
    report = queue_partitions(_url(tmp_path), tmp_path, keys=4, runs_per_key=8)
    print(f"sqlite: {report}")
    assert report.problems == []
    assert all(n == 1 for n in report.figures["max_running_per_key"].values())

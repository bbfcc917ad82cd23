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
    tick_problems,
    window_max,
)
from pyworkflow.testing.suite_flow_processes import FlowProcessCases

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _at(*seconds: float) -> list[datetime]:
    return [T0 + timedelta(seconds=s) for s in seconds]


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


class TestSQLiteFlows(FlowProcessCases):
    """The process checks on one SQLite file (PostgreSQL and Redis: their plugins' tests)."""

    @pytest.fixture
    def flow_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'pw.db'}"

"""Queues and schedules with real worker processes on one MariaDB database.

Three checks of :mod:`pyworkflow.testing.flowchecks` on this plugin's server (a
fresh database per test), with the numbers ``FlowProcessCases`` asserts: a queue's
concurrency and a partition's limit held across worker processes (admission under
``GET_LOCK``), and one run per cron tick across a worker SIGKILL (schedule leases
with ``SKIP LOCKED``). The suite's two other cases, a 30 s rate window and 20 s of
downtime for catch-up policies, are wall-clock bound (about a minute together) and
exercise no statement these do not; SQLite, Redis and PostgreSQL run them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pyworkflow.testing.flowchecks import queue_concurrency, queue_partitions, schedule_ticks

pytestmark = pytest.mark.slow


def test_queue_concurrency_3_over_4_worker_processes(database_url: str, tmp_path: Path) -> None:
    report = queue_concurrency(database_url, tmp_path, workers=4, runs=200, concurrency=3)
    print(report)
    assert report.problems == []
    assert report.figures["completed"] == 200


def test_partition_concurrency_1_per_key(database_url: str, tmp_path: Path) -> None:
    report = queue_partitions(database_url, tmp_path, keys=4, runs_per_key=8)
    print(report)
    assert report.problems == []
    assert all(n == 1 for n in report.figures["max_running_per_key"].values())


def test_a_one_second_cron_starts_one_run_per_tick_across_a_worker_kill(
    database_url: str, tmp_path: Path
) -> None:
    report = schedule_ticks(database_url, tmp_path, workers=3, seconds=10.0, kill_after=5.0)
    print(report)
    assert report.problems == []
    assert report.figures["ticks"] == report.figures["runs"]

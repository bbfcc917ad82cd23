"""Step checkpoints written on real Celery worker processes (issue 20)."""

from __future__ import annotations

import os
from pathlib import Path

from celery_checkpoint_flows import attempts, two_resumables
from celery_support import suite_cluster
from pyworkflow_celery.testing import RedisServer

from pyworkflow import get_result, start


def test_a_checkpoint_written_on_a_celery_worker_is_seen_by_the_next_attempt(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    log = tmp_path / "attempts.log"
    with suite_cluster(redis_server, tmp_path, "celery_checkpoint_flows"):
        # checkpoint_interval is the default (1 s): attempt 1 writes its first checkpoint,
        # keeps the later ones in memory, and writes the last (40) when it fails
        run_id = start(two_resumables, str(log), 100, 40)
        assert get_result(run_id, timeout=60) == [100, 100]
    rows = attempts(log)
    assert sorted((name, attempt, begin) for name, attempt, begin, _ in rows) == [
        ("a", 1, 0),
        ("a", 2, 40),
        ("b", 1, 0),
        ("b", 2, 40),
    ]
    assert os.getpid() not in {pid for *_, pid in rows}  # the bodies ran on the workers

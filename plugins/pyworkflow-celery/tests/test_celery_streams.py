"""Durable streams written by steps on real Celery worker processes (issue 19)."""

from __future__ import annotations

from pathlib import Path

from celery_support import suite_cluster
from pyworkflow_celery.testing import RedisServer

from pyworkflow import get_result, read_stream_sync, start
from pyworkflow.testing import streamflows


def test_a_celery_step_streams_every_chunk_once_in_order(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with suite_cluster(redis_server, tmp_path, "pyworkflow.testing.streamflows"):
        run_id = start(streamflows.stream_progress, 200, 0.001)
        items = list(read_stream_sync(run_id, "progress", poll=0.05))
        assert get_result(run_id, timeout=60) == 200
    assert [item.seq for item in items] == list(range(1, 201))
    assert [item.value["i"] for item in items] == list(range(200))
    assert {item.attempt for item in items} == {1}

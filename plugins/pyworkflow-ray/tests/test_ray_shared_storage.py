"""The Ray executor on the server-backed stores several processes share: Redis and PostgreSQL.

`pyworkflow worker` processes (executor ``ray``) claim the runs; activations and steps
run in the cluster's Ray worker processes, which reach the same Redis or PostgreSQL
(the storage URL travels in the tasks' runtime_env). SQLite (one host) is what the
other Ray tests use.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import ray_flows as flows
from ray_cluster import RayCluster
from ray_support import parse_worker, ray_workers

from pyworkflow import EventType, get_events, get_result, runtime, start
from pyworkflow.testing.servers import PostgresServer, RedisServer


@pytest.fixture(params=["redis", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A Redis (append-only, fsync always) or PostgreSQL server of the test's own."""
    if request.param == "redis":
        redis = RedisServer(tmp_path / "redis", aof=True)
        try:
            yield redis.url
        finally:
            redis.stop()
    else:
        postgres = PostgresServer()
        try:
            yield postgres.url
        finally:
            postgres.destroy()


def test_runs_complete_on_ray_with_shared_storage(
    ray_cluster: RayCluster, storage_url: str, tmp_path: Path
) -> None:
    workers = ray_workers(ray_cluster, tmp_path, storage_url)
    runtime.configure(storage=storage_url, embedded_worker=False, poll_interval=0.1)
    try:
        workers.start("w1")
        log = str(tmp_path / "calls.log")
        greet = start(flows.GreetWorkflow, "Alice")  # lone steps, in the activation's task
        napper = start(flows.nap_flow, log, pause="1s")  # a durable sleep between steps
        parallel = start(flows.parallel_flow, str(tmp_path))  # two dispatched steps at once
        assert get_result(greet, timeout=120) == "Hello, Alice!"
        assert get_result(napper, timeout=120) == "rested"
        assert [label for label, _, _ in get_result(parallel, timeout=120)] == ["a", "b"]
        for run_id in (greet, napper, parallel):
            started = [e for e in get_events(run_id) if e.type == EventType.STEP_STARTED]
            assert started
            for event in started:  # every step ran in a Ray worker process of the cluster
                node, _ = parse_worker(event.payload["worker"])
                assert node in ray_cluster.nodes.values()
        assert [e.type for e in get_events(napper)].count(EventType.WAIT_COMPLETED) == 1
    finally:
        runtime.reset()
        workers.stop_all()

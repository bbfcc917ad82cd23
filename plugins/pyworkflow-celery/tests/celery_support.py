"""Helpers of the Celery tests (a module of its own: every plugin's tests have a conftest)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyworkflow_celery.testing import CeleryCluster, RedisServer

from pyworkflow import runtime
from pyworkflow.testing.fixtures import require_server

HERE = Path(__file__).parent
#: fast leases and sweeps, so recovery tests take seconds
FAST = {
    "PYWORKFLOW_LEASE_SECONDS": "2",
    "PYWORKFLOW_POLL_INTERVAL": "0.1",
    "PYWORKFLOW_CELERY__SWEEP_INTERVAL": "1",
    "PYWORKFLOW_CELERY__DISPATCH_TIMEOUT": "10",
}


def start_redis(directory: Path, *, aof: bool = False) -> RedisServer:
    return require_server(lambda: RedisServer(directory, aof=aof))


def make_cluster(tmp_path: Path, broker_url: str, storage_url: str) -> CeleryCluster:
    return CeleryCluster(
        tmp_path, broker_url, storage_url, modules="celery_flows", pythonpath=HERE, settings=FAST
    )


def client_settings(broker_url: str, storage_url: str) -> dict[str, Any]:
    """configure() arguments of a test process that starts runs on the cluster."""
    return {
        "storage": storage_url,
        "executor": "celery",
        "lease_seconds": 2,
        "poll_interval": 0.1,
        "celery": {"broker_url": broker_url, "sweep_interval": 1, "dispatch_timeout": 10},
    }


@contextlib.contextmanager
def suite_cluster(redis_server: RedisServer, tmp_path: Path, modules: str) -> Iterator[str]:
    """Two workers (4 slots each) importing ``modules`` over SQLite, this process their client.

    Yields the storage URL (the ``pw`` fixture of the engine conformance cases).
    """
    redis_server.client().flushall()
    storage_url = f"sqlite:///{tmp_path / 'pw.db'}"
    cluster = CeleryCluster(
        tmp_path, redis_server.url, storage_url, modules=modules, pythonpath=HERE, settings=FAST
    )
    cluster.worker("w1", concurrency=4)
    cluster.worker("w2", concurrency=4)
    runtime.reset()
    runtime.configure(**client_settings(redis_server.url, storage_url))
    try:
        yield storage_url
    finally:
        runtime.reset()
        cluster.stop_all()

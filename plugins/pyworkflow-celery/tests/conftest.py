"""Real servers for the Celery tests: a redis-server and Celery worker/beat processes.

With ``CI=true`` a missing ``redis-server`` fails the tests instead of skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyworkflow_celery.testing import CeleryCluster, RedisMissingError, RedisServer

from pyworkflow import runtime
from pyworkflow.testing.fixtures import isolated_runtime  # noqa: F401  (autouse)

HERE = Path(__file__).parent
#: fast leases and sweeps, so recovery tests take seconds
FAST = {
    "PYWORKFLOW_LEASE_SECONDS": "2",
    "PYWORKFLOW_POLL_INTERVAL": "0.1",
    "PYWORKFLOW_CELERY__SWEEP_INTERVAL": "1",
    "PYWORKFLOW_CELERY__DISPATCH_TIMEOUT": "10",
}


def start_redis(directory: Path, *, aof: bool = False) -> RedisServer:
    try:
        return RedisServer(directory, aof=aof)
    except RedisMissingError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def make_cluster(tmp_path: Path, broker_url: str, storage_url: str) -> CeleryCluster:
    return CeleryCluster(
        tmp_path, broker_url, storage_url, modules="celery_flows", pythonpath=HERE, settings=FAST
    )


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


def client_settings(broker_url: str, storage_url: str) -> dict[str, Any]:
    """configure() arguments of a test process that starts runs on the cluster."""
    return {
        "storage": storage_url,
        "executor": "celery",
        "lease_seconds": 2,
        "poll_interval": 0.1,
        "celery": {"broker_url": broker_url, "sweep_interval": 1, "dispatch_timeout": 10},
    }


@pytest.fixture
def cluster(redis_server: RedisServer, tmp_path: Path) -> Iterator[CeleryCluster]:
    """A fresh broker database and storage; workers and beat are started by each test."""
    redis_server.client().flushall()
    storage_url = f"sqlite:///{tmp_path / 'pw.db'}"
    c = make_cluster(tmp_path, redis_server.url, storage_url)
    runtime.configure(**client_settings(redis_server.url, storage_url))
    yield c
    runtime.reset()
    c.stop_all()

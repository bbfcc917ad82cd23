"""Real servers for the Celery tests: a redis-server and Celery worker/beat processes.

With ``CI=true`` a missing ``redis-server`` fails the tests instead of skipping.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from celery_support import client_settings, make_cluster, start_redis
from pyworkflow_celery.testing import CeleryCluster, RedisServer

from pyworkflow import runtime
from pyworkflow.testing.fixtures import isolated_runtime  # noqa: F401  (autouse)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


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

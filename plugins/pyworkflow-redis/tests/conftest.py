"""Real redis-servers for the Redis storage tests (AOF with ``appendfsync always``).

With ``CI=true`` a missing ``redis-server`` fails the tests instead of skipping.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pyworkflow import runtime
from pyworkflow.testing.fixtures import (
    isolated_runtime,  # noqa: F401  (autouse)
    require_server,
)
from pyworkflow.testing.servers import RedisServer

HERE = Path(__file__).parent


def start_redis(directory: Path, *, aof: bool = True) -> RedisServer:
    """A redis-server of the test's own (AOF always unless ``aof=False``)."""
    return require_server(lambda: RedisServer(directory, aof=aof))


def unique_prefix() -> str:
    """A key prefix no other test uses, so every test starts on an empty store."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One durable redis-server (AOF, fsync on every write) shared by the suites."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared server's URL with a fresh prefix."""
    return f"{redis_server.url}?prefix={unique_prefix()}"


@pytest.fixture
def new_prefix() -> Callable[[], str]:
    """Makes key prefixes no other test uses."""
    return unique_prefix


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Starts redis-servers of the test's own (``own_redis(aof=False)``); stops them after."""
    servers: list[RedisServer] = []

    def start(*, aof: bool = True) -> RedisServer:
        server = start_redis(tmp_path / f"redis{len(servers)}", aof=aof)
        servers.append(server)
        return server

    yield start
    runtime.reset()  # the test's client lets go before its server goes away
    for server in servers:
        server.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

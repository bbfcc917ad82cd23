"""A real MariaDB server for the tests: one per session, a fresh database per test.

With ``CI=true`` a missing ``mariadbd`` fails the tests instead of skipping.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from pyworkflow import runtime
from pyworkflow.testing.fixtures import (
    isolated_runtime,  # noqa: F401  (autouse)
    require_server,
)
from pyworkflow.testing.servers import MariaDBServer


def start_mariadb(*, durable: bool = False, password: str | None = None) -> MariaDBServer:
    if password is None:
        return require_server(lambda: MariaDBServer(durable=durable))
    return require_server(lambda: MariaDBServer(durable=durable, user="app", password=password))


def fresh_database_url(server: MariaDBServer) -> str:
    """The server's URL with a database no other test uses (the storage creates it)."""
    base = server.url.rsplit("/", 1)[0]
    return f"{base}/t_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    server = start_mariadb()
    yield server
    server.destroy()


@pytest.fixture
def database_url(mariadb_server: MariaDBServer) -> str:
    """The session server's URL with a database no other test uses."""
    return fresh_database_url(mariadb_server)


@pytest.fixture
def durable_server() -> Iterator[MariaDBServer]:
    """A server of the test's own, flushing its log at every commit: restarts lose nothing."""
    server = start_mariadb(durable=True)
    yield server
    runtime.reset()  # the test's client lets go before the server goes away
    server.destroy()

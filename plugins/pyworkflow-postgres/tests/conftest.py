"""A real PostgreSQL server for the tests: one per session, a fresh schema per test.

With ``CI=true`` missing PostgreSQL binaries fail the tests instead of skipping.
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
from pyworkflow.testing.servers import PostgresServer


def start_postgres(*, fsync: bool = False) -> PostgresServer:
    return require_server(lambda: PostgresServer(fsync=fsync))


@pytest.fixture
def schema_url(postgres_server: PostgresServer) -> str:
    """The session server's URL with a schema no other test uses."""
    return f"{postgres_server.url}?schema=t_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    server.destroy()


@pytest.fixture
def durable_server() -> Iterator[PostgresServer]:
    """A server of the test's own, with fsync on: restarts must lose nothing."""
    server = start_postgres(fsync=True)
    yield server
    runtime.reset()  # the test's client stops listening before the server goes away
    server.destroy()

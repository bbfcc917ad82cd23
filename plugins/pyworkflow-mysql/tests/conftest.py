"""A real MariaDB server for the tests: one per session, a fresh database per test.

With ``CI=true`` a missing ``mariadbd`` fails the tests instead of skipping, and so does a
missing ``pyworkflow-mysql`` install; elsewhere, without the plugin installed (an interpreter
that has the other plugins only), these tests are not collected and a warning says why.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Iterator

import pytest

if not os.environ.get("CI") and importlib.util.find_spec("pyworkflow_mysql") is None:
    collect_ignore_glob = ["test_*.py"]
    warnings.warn(
        "plugins/pyworkflow-mysql/tests not collected: pyworkflow-mysql is not installed "
        "(pip install ./plugins/pyworkflow-mysql)",
        stacklevel=1,
    )
from mysql_support import fresh_database_url, start_mariadb

from pyworkflow import runtime
from pyworkflow.testing.fixtures import isolated_runtime  # noqa: F401  (autouse)
from pyworkflow.testing.servers import MariaDBServer


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

"""Helpers of the MySQL tests (a module name unique in the repository, unlike ``conftest``)."""

from __future__ import annotations

import uuid

from pyworkflow.testing.fixtures import require_server
from pyworkflow.testing.servers import MariaDBServer


def start_mariadb(*, durable: bool = False, password: str | None = None) -> MariaDBServer:
    """A MariaDB server of the test's own; skipped if missing (a failure with ``CI`` set)."""
    if password is None:
        return require_server(lambda: MariaDBServer(durable=durable))
    return require_server(lambda: MariaDBServer(durable=durable, user="app", password=password))


def fresh_database_url(server: MariaDBServer) -> str:
    """The server's URL with a database no other test uses (the storage creates it)."""
    base = server.url.rsplit("/", 1)[0]
    return f"{base}/t_{uuid.uuid4().hex[:12]}"

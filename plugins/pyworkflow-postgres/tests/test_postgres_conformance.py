"""The shipped storage and engine suites, unchanged, on a real PostgreSQL server."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pyworkflow_postgres import PostgresStorage

from pyworkflow.storage.base import Storage
from pyworkflow.testing import EngineConformance, StorageConformance
from pyworkflow.testing.servers import PostgresServer


def fresh_schema_url(server: PostgresServer) -> str:
    """The server's URL with a schema no other test uses."""
    return f"{server.url}?schema=t_{uuid.uuid4().hex[:12]}"


class TestPostgresStorage(StorageConformance):
    @pytest.fixture(autouse=True)
    def _server(self, postgres_server: PostgresServer) -> None:
        self.server = postgres_server

    def make_storage(self, tmp_path: Path) -> Storage:
        return PostgresStorage(fresh_schema_url(self.server))


class TestEngineOnPostgres(EngineConformance):
    @pytest.fixture(autouse=True)
    def _server(self, postgres_server: PostgresServer) -> None:
        self.server = postgres_server

    def make_storage_url(self, tmp_path: Path) -> str:
        return fresh_schema_url(self.server)

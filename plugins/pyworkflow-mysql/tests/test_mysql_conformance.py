"""The shipped storage and engine suites, unchanged, on a real MariaDB server."""

from __future__ import annotations

from pathlib import Path

import pytest
from mysql_support import fresh_database_url
from pyworkflow_mysql import MySQLStorage

from pyworkflow.storage.base import Storage
from pyworkflow.testing import EngineConformance, StorageConformance
from pyworkflow.testing.servers import MariaDBServer


class TestMySQLStorage(StorageConformance):
    @pytest.fixture(autouse=True)
    def _server(self, mariadb_server: MariaDBServer) -> None:
        self.server = mariadb_server

    def make_storage(self, tmp_path: Path) -> Storage:
        return MySQLStorage(fresh_database_url(self.server))


class TestEngineOnMySQL(EngineConformance):
    @pytest.fixture(autouse=True)
    def _server(self, mariadb_server: MariaDBServer) -> None:
        self.server = mariadb_server

    def make_storage_url(self, tmp_path: Path) -> str:
        return fresh_database_url(self.server)

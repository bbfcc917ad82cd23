"""The Redis storage passes the shipped storage and engine conformance suites."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pyworkflow_redis import RedisStorage

from pyworkflow.storage.base import Storage
from pyworkflow.testing import EngineConformance, StorageConformance
from pyworkflow.testing.servers import RedisServer


class TestRedisStorage(StorageConformance):
    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer) -> None:
        self.server = redis_server

    def make_storage(self, tmp_path: Path) -> Storage:
        return RedisStorage(f"{self.server.url}?prefix=t{uuid.uuid4().hex[:12]}")


class TestEngineOnRedis(EngineConformance):
    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer) -> None:
        self.server = redis_server

    def make_storage_url(self, tmp_path: Path) -> str:
        return f"{self.server.url}?prefix=t{uuid.uuid4().hex[:12]}"

"""Every built-in storage passes the shipped conformance suite."""

from __future__ import annotations

from pathlib import Path

from pyworkflow.storage.base import Storage
from pyworkflow.storage.file import FileStorage
from pyworkflow.storage.memory import MemoryStorage
from pyworkflow.storage.sqlite import SQLiteStorage
from pyworkflow.testing import StorageConformance


class TestMemoryStorage(StorageConformance):
    def make_storage(self, tmp_path: Path) -> Storage:
        return MemoryStorage()


class TestSQLiteStorage(StorageConformance):
    def make_storage(self, tmp_path: Path) -> Storage:
        return SQLiteStorage(f"sqlite:///{tmp_path / 'pw.db'}")


class TestFileStorage(StorageConformance):
    def make_storage(self, tmp_path: Path) -> Storage:
        return FileStorage(f"file://{tmp_path / 'store'}")

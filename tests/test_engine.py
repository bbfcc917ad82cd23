"""The shipped engine test set, run on every built-in storage backend."""

from __future__ import annotations

from pathlib import Path

from pyworkflow.testing import EngineConformance


class TestEngineOnMemory(EngineConformance):
    def make_storage_url(self, tmp_path: Path) -> str:
        return "memory://"


class TestEngineOnSQLite(EngineConformance):
    def make_storage_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'pw.db'}"


class TestEngineOnFile(EngineConformance):
    def make_storage_url(self, tmp_path: Path) -> str:
        return f"file://{tmp_path / 'runs'}"

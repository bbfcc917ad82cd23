"""Shared fixtures: a fresh PyWorkflow runtime per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyworkflow import runtime


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Every test starts with no runtime and no configure() overrides, in a temp cwd."""
    for name in list(__import__("os").environ):
        if name.startswith("PYWORKFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    runtime.reset()
    yield
    runtime.reset()


FAST: dict[str, Any] = {"poll_interval": 0.05, "lease_seconds": 2.0, "drain_timeout": 2.0}


@pytest.fixture(params=["memory", "sqlite", "file"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The engine test set runs on every built-in storage."""
    if request.param == "memory":
        return "memory://"
    if request.param == "file":
        return f"file://{tmp_path / 'runs'}"
    return f"sqlite:///{tmp_path / 'pw.db'}"


@pytest.fixture
def pw(storage_url: str) -> str:
    """Configure a fast runtime on each built-in storage; returns the storage URL."""
    runtime.configure(storage=storage_url, **FAST)
    return storage_url

"""Shared fixtures: a fresh PyWorkflow runtime per test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pyworkflow import runtime
from pyworkflow.testing.fixtures import isolated_runtime  # noqa: F401  (autouse)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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

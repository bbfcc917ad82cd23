"""pytest fixtures for projects and plugins that test against PyWorkflow.

Import the ones you want into a ``conftest.py``::

    from pyworkflow.testing.fixtures import isolated_runtime  # noqa: F401  (autouse)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyworkflow import runtime

__all__ = ["isolated_runtime"]


@pytest.fixture(autouse=True)
def isolated_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Every test starts with no runtime, no ``PYWORKFLOW_*`` variables, in a temp cwd."""
    for name in list(os.environ):
        if name.startswith("PYWORKFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    runtime.reset()
    yield
    runtime.reset()

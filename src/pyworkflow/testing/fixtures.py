"""pytest fixtures for projects and plugins that test against PyWorkflow.

Import the ones you want into a ``conftest.py``::

    from pyworkflow.testing.fixtures import isolated_runtime  # noqa: F401  (autouse)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from pyworkflow import runtime
from pyworkflow.storage.base import set_command_mode
from pyworkflow.testing.servers import ServerMissingError

__all__ = ["isolated_runtime", "require_server"]

T = TypeVar("T")


def require_server(start: Callable[[], T]) -> T:
    """``start()`` a test server; if its binary is missing, skip the test (fail under ``CI``)."""
    try:
        return start()
    except ServerMissingError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(autouse=True)
def isolated_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Every test starts with no runtime, no ``PYWORKFLOW_*`` variables, in a temp cwd."""
    for name in list(os.environ):
        if name.startswith("PYWORKFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    runtime.reset()
    set_command_mode(False)  # an in-process CLI call of an earlier test may have set it
    yield
    runtime.reset()
    set_command_mode(False)

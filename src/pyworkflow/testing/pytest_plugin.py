"""PyWorkflow's pytest plugin (the ``pytest11`` entry point ``pyworkflow``).

Installed with the package; it adds fixtures and nothing else, and imports
PyWorkflow only when a test asks for one.

- ``workflow_env``: an open :class:`~pyworkflow.testing.WorkflowEnvironment`
  per test, closed afterwards. It is a plain (sync) fixture, so it serves
  ``async`` tests under anyio's pytest plugin (``pytest.mark.anyio``: use
  ``await workflow_env.run(...)``) and sync tests alike (use
  ``workflow_env.sync.run(...)``).
- ``workflow_env_options``: the keyword arguments ``workflow_env`` is made
  with (default none); override it in a test module or ``conftest.py`` to set
  ``start=`` or runtime settings such as ``serializer``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pyworkflow.testing.environment import WorkflowEnvironment

__all__ = ["workflow_env", "workflow_env_options"]


@pytest.fixture
def workflow_env_options() -> dict[str, Any]:
    """Keyword arguments for :class:`~pyworkflow.testing.WorkflowEnvironment` (none by default).

    A pytest fixture: override it in a test module or ``conftest.py``.

    ```python
    from datetime import UTC, datetime

    import pytest

    @pytest.fixture
    def workflow_env_options() -> dict:
        return {"start": datetime(2030, 1, 1, tzinfo=UTC), "serializer": "pickle"}
    ```
    """
    return {}


@pytest.fixture
def workflow_env(workflow_env_options: dict[str, Any]) -> Iterator[WorkflowEnvironment]:
    """A fresh, open workflow environment (memory storage, virtual clock) for one test.

    A pytest fixture, available in every test once PyWorkflow is installed;
    it is closed (its runs discarded) after the test.

    ```python
    import pytest

    @pytest.fixture
    def anyio_backend() -> str:
        return "asyncio"  # PyWorkflow runs on asyncio (else anyio tries trio too)

    @pytest.mark.anyio
    async def test_checkout(workflow_env) -> None:
        assert await workflow_env.run(checkout, "order-1") == "charged order-1"

    def test_checkout_sync(workflow_env) -> None:
        assert workflow_env.sync.run(checkout, "order-1") == "charged order-1"
    ```
    """
    from pyworkflow.testing.environment import WorkflowEnvironment

    with WorkflowEnvironment(**workflow_env_options) as env:
        yield env

"""Storage lifecycle: open(task_group), tasks in that group, storages from before the parameter."""

from __future__ import annotations

import asyncio
from pathlib import Path

import anyio
import pytest

from pyworkflow.config import load_settings
from pyworkflow.runtime import Runtime
from pyworkflow.storage.background import BackgroundTasks
from pyworkflow.storage.base import open_storage
from pyworkflow.storage.memory import MemoryStorage
from pyworkflow.testing import StorageConformance

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class LegacyStorage(MemoryStorage):
    """A third-party storage written before open() took a task group."""

    opened = 0

    async def open(self) -> None:  # type: ignore[override]  # the old signature, on purpose
        type(self).opened += 1


@pytest.mark.filterwarnings("ignore:.*takes no task group:DeprecationWarning")
class TestLegacyStorage(StorageConformance):
    """The shipped suite passes for a storage whose open() takes no task group."""

    def make_storage(self, tmp_path: Path) -> LegacyStorage:
        return LegacyStorage()


async def test_a_storage_without_the_parameter_is_opened_with_a_warning() -> None:
    storage = LegacyStorage()
    before = LegacyStorage.opened
    async with anyio.create_task_group() as tg:
        with pytest.warns(DeprecationWarning, match=r"LegacyStorage\.open\(\) takes no task group"):
            await open_storage(storage, tg)
    assert LegacyStorage.opened == before + 1


def test_the_runtime_opens_a_storage_without_the_parameter() -> None:
    runtime = Runtime(load_settings({"storage": "memory://"}))
    runtime.storage = LegacyStorage()
    before = LegacyStorage.opened
    with pytest.warns(DeprecationWarning, match="takes no task group"):
        runtime.start()
    runtime.shutdown()
    assert LegacyStorage.opened == before + 1


async def test_background_tasks_end_on_aclose_and_a_failure_stays_contained() -> None:
    ran: list[str] = []

    async def forever() -> None:
        ran.append("forever")
        await anyio.sleep_forever()

    async def broken() -> None:
        ran.append("broken")
        raise ValueError("a bug in a helper loop")

    async with anyio.create_task_group() as tg:
        tasks = BackgroundTasks(tg, owner="memory://")
        before = asyncio.all_tasks()
        await tasks.start(forever, name="forever")
        await tasks.start(broken, name="broken")  # logged; the task group goes on
        started = asyncio.all_tasks() - before
        assert ran == ["forever", "broken"] and tasks.running == 1
        await tasks.aclose()
        assert tasks.running == 0
        assert [t.get_name() for t in started if not t.done()] == []
        await tasks.aclose()  # idempotent
        with pytest.raises(RuntimeError, match="closed"):
            await tasks.start(forever, name="late")
    assert not tg.cancel_scope.cancel_called  # nothing of the storage's needed cancelling

"""Built-in plugin serving ``memory://`` storage URLs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyworkflow.hookspecs import StorageRegister, hookimpl

if TYPE_CHECKING:
    from pyworkflow.config import Settings
    from pyworkflow.storage.memory import MemoryStorage


def _create(url: str, settings: Settings) -> MemoryStorage:
    from pyworkflow.storage.memory import MemoryStorage  # imported on first use: a fast start

    return MemoryStorage(url)


@hookimpl
def pyworkflow_register_storage(register: StorageRegister) -> None:
    """Serve ``memory://``."""
    register("memory", _create)

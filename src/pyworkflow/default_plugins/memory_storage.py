"""Built-in plugin serving ``memory://`` storage URLs."""

from __future__ import annotations

from pyworkflow.config import Settings
from pyworkflow.hookspecs import StorageRegister, hookimpl
from pyworkflow.storage.memory import MemoryStorage


def _create(url: str, settings: Settings) -> MemoryStorage:
    return MemoryStorage(url)


@hookimpl
def pyworkflow_register_storage(register: StorageRegister) -> None:
    """Serve ``memory://``."""
    register("memory", _create)

"""Built-in plugin serving ``sqlite:///path`` storage URLs."""

from __future__ import annotations

from pyworkflow.config import Settings
from pyworkflow.hookspecs import StorageRegister, hookimpl
from pyworkflow.storage.sqlite import SQLiteStorage


def _create(url: str, settings: Settings) -> SQLiteStorage:
    return SQLiteStorage(url, synchronous=settings.sqlite_synchronous)


@hookimpl
def pyworkflow_register_storage(register: StorageRegister) -> None:
    """Serve ``sqlite:///path``."""
    register("sqlite", _create)

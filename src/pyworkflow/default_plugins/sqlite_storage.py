"""Built-in plugin serving ``sqlite:///path`` storage URLs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyworkflow.hookspecs import StorageRegister, hookimpl

if TYPE_CHECKING:
    from pyworkflow.config import Settings
    from pyworkflow.storage.sqlite import SQLiteStorage


def _create(url: str, settings: Settings) -> SQLiteStorage:
    from pyworkflow.storage.sqlite import SQLiteStorage  # imported on first use: a fast start

    return SQLiteStorage(url, synchronous=settings.sqlite_synchronous)


@hookimpl
def pyworkflow_register_storage(register: StorageRegister) -> None:
    """Serve ``sqlite:///path``."""
    register("sqlite", _create)

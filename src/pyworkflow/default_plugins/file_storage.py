"""Built-in plugin serving ``file:///dir`` storage URLs."""

from __future__ import annotations

from pyworkflow.config import Settings
from pyworkflow.hookspecs import StorageRegister, hookimpl
from pyworkflow.storage.file import FileStorage


def _create(url: str, settings: Settings) -> FileStorage:
    return FileStorage(url)


@hookimpl
def pyworkflow_register_storage(register: StorageRegister) -> None:
    """Serve ``file:///dir``."""
    register("file", _create)

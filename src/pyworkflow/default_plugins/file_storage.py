"""Built-in plugin serving ``file:///dir`` storage URLs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyworkflow.hookspecs import StorageRegister, hookimpl

if TYPE_CHECKING:
    from pyworkflow.config import Settings
    from pyworkflow.storage.file import FileStorage


def _create(url: str, settings: Settings) -> FileStorage:
    from pyworkflow.storage.file import FileStorage  # imported on first use: a fast start

    return FileStorage(url)


@hookimpl
def pyworkflow_register_storage(register: StorageRegister) -> None:
    """Serve ``file:///dir``."""
    register("file", _create)

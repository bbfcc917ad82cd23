"""Entry point of the ``pyworkflow-postgres`` distribution: serves ``postgresql://`` URLs."""

from __future__ import annotations

from typing import Any

from pyworkflow.hookspecs import StorageRegister, hookimpl
from pyworkflow.storage.base import Storage

#: URL schemes this plugin serves.
SCHEMES = ("postgresql", "postgresql+asyncpg", "postgres")


def _create(url: str, settings: Any) -> Storage:
    from pyworkflow_postgres.settings import PostgresSettings
    from pyworkflow_postgres.storage import PostgresStorage

    return PostgresStorage(url, PostgresSettings.from_settings(settings))


@hookimpl
def pyworkflow_register_storage(register: StorageRegister) -> None:
    """Serve ``postgresql://``, ``postgresql+asyncpg://`` and ``postgres://``."""
    for scheme in SCHEMES:
        register(scheme, _create)

"""Entry point of the ``pyworkflow-mysql`` distribution: serves ``mysql://`` and ``mariadb://``."""

from __future__ import annotations

from typing import Any

from pyworkflow.hookspecs import StorageRegister, hookimpl
from pyworkflow.storage.base import Storage

#: URL schemes this plugin serves.
SCHEMES = ("mysql", "mariadb", "mysql+aiomysql", "mariadb+aiomysql")


def _create(url: str, settings: Any) -> Storage:
    from pyworkflow_mysql.settings import MySQLSettings
    from pyworkflow_mysql.storage import MySQLStorage

    return MySQLStorage(url, MySQLSettings.from_settings(settings))


@hookimpl
def pyworkflow_register_storage(register: StorageRegister) -> None:
    """Serve ``mysql://``, ``mariadb://`` and their ``+aiomysql`` spellings."""
    for scheme in SCHEMES:
        register(scheme, _create)

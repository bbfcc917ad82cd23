"""Entry point of the ``pyworkflow-redis`` distribution: serves ``redis://`` and ``rediss://``."""

from __future__ import annotations

from pyworkflow.config import Settings
from pyworkflow.hookspecs import StorageRegister, hookimpl
from pyworkflow.storage.base import Storage


def _create(url: str, settings: Settings) -> Storage:
    from pyworkflow_redis.storage import RedisStorage

    return RedisStorage(url, settings)


@hookimpl
def pyworkflow_register_storage(register: StorageRegister) -> None:
    """Serve ``redis://`` (and ``rediss://``, TLS) storage URLs."""
    register("redis", _create)
    register("rediss", _create)

"""PyWorkflow on Redis: ``storage = "redis://host:6379/0"`` in ``[tool.pyworkflow]``.

Options in ``[tool.pyworkflow.redis]`` (``prefix``, ``durability``,
``reconnect_timeout``) or the URL query; see ``docs/storage-redis.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyworkflow_redis.settings import RedisSettings
    from pyworkflow_redis.storage import RedisStorage

__all__ = ["RedisSettings", "RedisStorage"]
__version__ = "0.1.0"

#: Public names, imported on first use: loading the plugin (its entry point) stays cheap.
_EXPORTS: dict[str, str] = {
    "RedisSettings": "pyworkflow_redis.settings",
    "RedisStorage": "pyworkflow_redis.storage",
}


if not TYPE_CHECKING:  # type checkers see the imports above

    def __getattr__(name: str) -> Any:
        if name not in _EXPORTS:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value

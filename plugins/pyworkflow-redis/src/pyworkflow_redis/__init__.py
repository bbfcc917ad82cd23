"""PyWorkflow on Redis: ``storage = "redis://host:6379/0"`` in ``[tool.pyworkflow]``.

Options in ``[tool.pyworkflow.redis]`` (``prefix``, ``durability``,
``reconnect_timeout``) or the URL query; see ``docs/storage-redis.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyworkflow.lazy import lazy_attributes

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
    __getattr__ = lazy_attributes(__name__, _EXPORTS)

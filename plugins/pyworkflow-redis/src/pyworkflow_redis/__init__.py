"""PyWorkflow on Redis: ``storage = "redis://host:6379/0"`` in ``[tool.pyworkflow]``.

Options in ``[tool.pyworkflow.redis]`` (``prefix``, ``durability``,
``reconnect_timeout``) or the URL query; see ``docs/storage-redis.md``.
"""

from pyworkflow_redis.settings import RedisSettings
from pyworkflow_redis.storage import RedisStorage

__all__ = ["RedisSettings", "RedisStorage"]
__version__ = "0.1.0"

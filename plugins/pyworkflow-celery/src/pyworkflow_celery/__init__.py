"""PyWorkflow on Celery: ``executor = "celery"`` in ``[tool.pyworkflow]``.

Workers: ``celery -A pyworkflow_celery.app worker -Q pyworkflow.workflows,pyworkflow.steps``;
timers' safety net: ``celery -A pyworkflow_celery.app beat``.
"""

from pyworkflow_celery.executor import CeleryExecutor
from pyworkflow_celery.settings import CelerySettings

__all__ = ["CeleryExecutor", "CelerySettings"]
__version__ = "0.1.0"

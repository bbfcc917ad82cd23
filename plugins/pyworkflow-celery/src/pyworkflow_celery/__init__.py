"""PyWorkflow on Celery: ``executor = "celery"`` in ``[tool.pyworkflow]``.

Workers: ``celery -A pyworkflow_celery.app worker -Q pyworkflow.workflows,pyworkflow.steps``;
timers' safety net: ``celery -A pyworkflow_celery.app beat``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyworkflow.lazy import lazy_attributes

if TYPE_CHECKING:
    from pyworkflow_celery.executor import CeleryExecutor
    from pyworkflow_celery.settings import CelerySettings

__all__ = ["CeleryExecutor", "CelerySettings"]
__version__ = "0.1.0"

#: Public names, imported on first use: loading the plugin (its entry point) stays cheap.
_EXPORTS: dict[str, str] = {
    "CeleryExecutor": "pyworkflow_celery.executor",
    "CelerySettings": "pyworkflow_celery.settings",
}


if not TYPE_CHECKING:  # type checkers see the imports above
    __getattr__ = lazy_attributes(__name__, _EXPORTS)

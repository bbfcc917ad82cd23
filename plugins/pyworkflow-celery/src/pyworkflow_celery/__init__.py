"""PyWorkflow on Celery: ``executor = "celery"`` in ``[tool.pyworkflow]``.

Workers: ``celery -A pyworkflow_celery.app worker -Q pyworkflow.workflows,pyworkflow.steps``;
timers' safety net: ``celery -A pyworkflow_celery.app beat``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

    def __getattr__(name: str) -> Any:
        if name not in _EXPORTS:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value

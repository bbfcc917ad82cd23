"""PostgreSQL storage for PyWorkflow (``postgresql://`` URLs).

Install it next to PyWorkflow and point ``storage`` at a database::

    [tool.pyworkflow]
    storage = "postgresql://app:secret@db.internal:5432/app"
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyworkflow_postgres.settings import PostgresSettings
    from pyworkflow_postgres.storage import PostgresStorage

__all__ = ["PostgresSettings", "PostgresStorage"]

#: Public names, imported on first use: loading the plugin (its entry point) stays cheap.
_EXPORTS: dict[str, str] = {
    "PostgresSettings": "pyworkflow_postgres.settings",
    "PostgresStorage": "pyworkflow_postgres.storage",
}


if not TYPE_CHECKING:  # type checkers see the imports above

    def __getattr__(name: str) -> Any:
        if name not in _EXPORTS:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value

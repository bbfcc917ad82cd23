"""PostgreSQL storage for PyWorkflow (``postgresql://`` URLs).

Install it next to PyWorkflow and point ``storage`` at a database::

    [tool.pyworkflow]
    storage = "postgresql://app:secret@db.internal:5432/app"
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyworkflow.lazy import lazy_attributes

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
    __getattr__ = lazy_attributes(__name__, _EXPORTS)

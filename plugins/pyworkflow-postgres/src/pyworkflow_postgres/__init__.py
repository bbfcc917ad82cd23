"""PostgreSQL storage for PyWorkflow (``postgresql://`` URLs).

Install it next to PyWorkflow and point ``storage`` at a database::

    [tool.pyworkflow]
    storage = "postgresql://app:secret@db.internal:5432/app"
"""

from __future__ import annotations

from pyworkflow_postgres.settings import PostgresSettings
from pyworkflow_postgres.storage import PostgresStorage

__all__ = ["PostgresSettings", "PostgresStorage"]

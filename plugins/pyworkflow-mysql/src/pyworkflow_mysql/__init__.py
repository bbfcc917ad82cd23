"""MySQL and MariaDB storage for PyWorkflow (``mysql://`` and ``mariadb://`` URLs).

Install it next to PyWorkflow and point ``storage`` at a database::

    [tool.pyworkflow]
    storage = "mysql://app:secret@db.internal:3306/app"
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyworkflow.lazy import lazy_attributes

if TYPE_CHECKING:
    from pyworkflow_mysql.settings import MySQLSettings
    from pyworkflow_mysql.storage import MySQLStorage

__all__ = ["MySQLSettings", "MySQLStorage"]

#: Public names, imported on first use: loading the plugin (its entry point) stays cheap.
_EXPORTS: dict[str, str] = {
    "MySQLSettings": "pyworkflow_mysql.settings",
    "MySQLStorage": "pyworkflow_mysql.storage",
}


if not TYPE_CHECKING:  # type checkers see the imports above
    __getattr__ = lazy_attributes(__name__, _EXPORTS)

"""Entry point of the ``pyworkflow-skeleton`` distribution: serves ``skeleton://`` storage URLs.

PyWorkflow imports this module through the ``pyworkflow`` entry point declared in
pyproject.toml and registers its ``@hookimpl`` functions. Keep it cheap to import:
the backend module is imported by the factory, on first use.
"""

from __future__ import annotations

from pyworkflow.config import Settings
from pyworkflow.hookspecs import StorageRegister, hookimpl
from pyworkflow.storage.base import Storage


def _create(url: str, settings: Settings) -> Storage:
    """The factory: an unopened storage for ``url`` (the runtime opens and closes it)."""
    from pyworkflow_skeleton.storage import SkeletonStorage

    return SkeletonStorage(url, settings)


@hookimpl
def pyworkflow_register_storage(register: StorageRegister) -> None:
    """Serve ``skeleton://`` storage URLs (``storage = "skeleton://"`` in config)."""
    register("skeleton", _create)

"""PyWorkflow on Ray: ``executor = "ray"`` in ``[tool.pyworkflow]``.

``pyworkflow worker`` (or a script's embedded worker) claims runs, holds their
leases and fires timers; activations (replays, with their lone steps) and
dispatched steps run as Ray tasks, steps placed by ``@step(resources=...)``.
The cluster itself is Ray's: ``ray start --head`` and ``ray start --address``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyworkflow.lazy import lazy_attributes

if TYPE_CHECKING:
    from pyworkflow_ray.executor import RayExecutor
    from pyworkflow_ray.settings import RaySettings

__all__ = ["RayExecutor", "RaySettings"]
__version__ = "0.1.0"

#: Public names, imported on first use: loading the plugin (its entry point) stays cheap.
_EXPORTS: dict[str, str] = {
    "RayExecutor": "pyworkflow_ray.executor",
    "RaySettings": "pyworkflow_ray.settings",
}


if not TYPE_CHECKING:  # type checkers see the imports above
    __getattr__ = lazy_attributes(__name__, _EXPORTS)

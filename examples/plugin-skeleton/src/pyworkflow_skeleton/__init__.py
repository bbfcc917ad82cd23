"""A PyWorkflow storage plugin to copy: ``storage = "skeleton://"`` in ``[tool.pyworkflow]``.

Options in ``[tool.pyworkflow.skeleton]`` (``log_writes``); the backend is
:class:`pyworkflow_skeleton.storage.SkeletonStorage`. Nothing is imported here,
so loading the plugin (its entry point, ``pyworkflow_skeleton.plugin``) stays cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"

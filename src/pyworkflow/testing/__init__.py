"""Test harness shipped with PyWorkflow.

For application authors: :class:`WorkflowEnvironment` runs workflows on
memory storage with a virtual clock (time skips to each timer; steps can be
replaced by fakes), and :func:`run_step` / :func:`arun_step` run a step body
alone with a chosen :class:`~pyworkflow.context.StepContext`. For plugin
authors: the storage and engine conformance suites (``StorageConformance``,
``EngineConformance``), which need pytest and are imported on first use, so
importing this package does not require pytest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyworkflow.testing.steps import arun_step, run_step

if TYPE_CHECKING:
    from pyworkflow.testing.clock import VirtualClock
    from pyworkflow.testing.engine_suite import EngineConformance
    from pyworkflow.testing.environment import (
        SyncWorkflowEnvironment,
        WorkflowBlockedError,
        WorkflowEnvironment,
    )
    from pyworkflow.testing.histories import (
        HistoryFormatError,
        HistoryReport,
        ReplayMismatchError,
        replay,
    )
    from pyworkflow.testing.overrides import StepCall, StepOverride
    from pyworkflow.testing.storage_suite import StorageConformance

__all__ = [
    "EngineConformance",
    "HistoryFormatError",
    "HistoryReport",
    "ReplayMismatchError",
    "StepCall",
    "StepOverride",
    "StorageConformance",
    "SyncWorkflowEnvironment",
    "VirtualClock",
    "WorkflowBlockedError",
    "WorkflowEnvironment",
    "arun_step",
    "replay",
    "run_step",
]

_LAZY = {
    "EngineConformance": "pyworkflow.testing.engine_suite",
    "StorageConformance": "pyworkflow.testing.storage_suite",
    "HistoryFormatError": "pyworkflow.testing.histories",
    "HistoryReport": "pyworkflow.testing.histories",
    "ReplayMismatchError": "pyworkflow.testing.histories",
    "replay": "pyworkflow.testing.histories",
    "StepCall": "pyworkflow.testing.overrides",
    "StepOverride": "pyworkflow.testing.overrides",
    "SyncWorkflowEnvironment": "pyworkflow.testing.environment",
    "VirtualClock": "pyworkflow.testing.clock",
    "WorkflowBlockedError": "pyworkflow.testing.environment",
    "WorkflowEnvironment": "pyworkflow.testing.environment",
}


def __getattr__(name: str) -> Any:
    """Import the conformance suites (pytest-based) and the history replayer on first access."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

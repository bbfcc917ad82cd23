"""PyWorkflow: durable, event-sourced workflows in plain async Python.

The public names below are imported on first use (:pep:`562` module
``__getattr__``), so ``import pyworkflow`` stays cheap: a script, a worker or
``pyworkflow --help`` pays only for what it touches. Type checkers see the
ordinary imports under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyworkflow.children import ChildHandle, start_child
    from pyworkflow.client import (
        RunInfo,
        acancel,
        aexecute,
        aexecute_workflow,
        aget_events,
        aget_result,
        aget_run,
        alist_runs,
        aresume_hook,
        astart,
        astart_workflow,
        cancel,
        execute,
        execute_workflow,
        get_events,
        get_result,
        get_run,
        list_runs,
        resume_hook,
        start,
        start_workflow,
    )
    from pyworkflow.context import (
        StepContext,
        continue_as_new,
        create_hook,
        deprecate_patch,
        first,
        get_step_context,
        now,
        patched,
        random,
        scheduled_at,
        sleep,
        uuid4,
        workflow_logger,
    )
    from pyworkflow.errors import (
        ChildWorkflowError,
        ConfigError,
        EventLimitError,
        FatalError,
        HookNotFoundError,
        HookTimeoutError,
        NonDeterminismError,
        PayloadTooLargeError,
        PayloadValidationError,
        PyWorkflowError,
        RetryableError,
        RunNotFoundError,
        ScheduleExistsError,
        ScheduleNotFoundError,
        SerializationError,
        StepFailedError,
        WorkflowCancelledError,
        WorkflowFailedError,
        WorkflowTimeoutError,
    )
    from pyworkflow.hooks import Hook
    from pyworkflow.logs import disable_logging, enable_logging
    from pyworkflow.models import Event, EventType, RunPage, RunStatus
    from pyworkflow.runtime import configure, shutdown
    from pyworkflow.schedules.api import acreate_schedule, create_schedule
    from pyworkflow.schedules.spec import Cron, Every
    from pyworkflow.shielding import shield
    from pyworkflow.step import Step, step
    from pyworkflow.streams import (
        StreamItem,
        read_stream,
        read_stream_sync,
        write_stream,
        write_stream_sync,
    )
    from pyworkflow.workflow import Workflow, workflow

__version__ = "0.1.0"
"""The version of this PyWorkflow package (also ``importlib.metadata.version("pyworkflow")``)."""

#: Each public name and the module that defines it, imported on first access.
_EXPORTS: dict[str, str] = {
    "ChildHandle": "pyworkflow.children",
    "ChildWorkflowError": "pyworkflow.errors",
    "ConfigError": "pyworkflow.errors",
    "EventLimitError": "pyworkflow.errors",
    "Cron": "pyworkflow.schedules.spec",
    "Event": "pyworkflow.models",
    "EventType": "pyworkflow.models",
    "Every": "pyworkflow.schedules.spec",
    "FatalError": "pyworkflow.errors",
    "Hook": "pyworkflow.hooks",
    "HookNotFoundError": "pyworkflow.errors",
    "HookTimeoutError": "pyworkflow.errors",
    "NonDeterminismError": "pyworkflow.errors",
    "PayloadTooLargeError": "pyworkflow.errors",
    "PayloadValidationError": "pyworkflow.errors",
    "PyWorkflowError": "pyworkflow.errors",
    "RetryableError": "pyworkflow.errors",
    "RunInfo": "pyworkflow.client",
    "RunNotFoundError": "pyworkflow.errors",
    "RunPage": "pyworkflow.models",
    "RunStatus": "pyworkflow.models",
    "ScheduleExistsError": "pyworkflow.errors",
    "ScheduleNotFoundError": "pyworkflow.errors",
    "SerializationError": "pyworkflow.errors",
    "Step": "pyworkflow.step",
    "StepContext": "pyworkflow.context",
    "StepFailedError": "pyworkflow.errors",
    "Workflow": "pyworkflow.workflow",
    "WorkflowCancelledError": "pyworkflow.errors",
    "WorkflowFailedError": "pyworkflow.errors",
    "WorkflowTimeoutError": "pyworkflow.errors",
    "acancel": "pyworkflow.client",
    "acreate_schedule": "pyworkflow.schedules.api",
    "aexecute": "pyworkflow.client",
    "aexecute_workflow": "pyworkflow.client",
    "aget_events": "pyworkflow.client",
    "aget_result": "pyworkflow.client",
    "aget_run": "pyworkflow.client",
    "alist_runs": "pyworkflow.client",
    "aresume_hook": "pyworkflow.client",
    "astart": "pyworkflow.client",
    "astart_workflow": "pyworkflow.client",
    "cancel": "pyworkflow.client",
    "configure": "pyworkflow.runtime",
    "continue_as_new": "pyworkflow.context",
    "create_hook": "pyworkflow.context",
    "create_schedule": "pyworkflow.schedules.api",
    "deprecate_patch": "pyworkflow.context",
    "disable_logging": "pyworkflow.logs",
    "enable_logging": "pyworkflow.logs",
    "execute": "pyworkflow.client",
    "execute_workflow": "pyworkflow.client",
    "first": "pyworkflow.context",
    "get_events": "pyworkflow.client",
    "get_result": "pyworkflow.client",
    "get_run": "pyworkflow.client",
    "get_step_context": "pyworkflow.context",
    "StreamItem": "pyworkflow.streams",
    "read_stream": "pyworkflow.streams",
    "read_stream_sync": "pyworkflow.streams",
    "write_stream": "pyworkflow.streams",
    "write_stream_sync": "pyworkflow.streams",
    "list_runs": "pyworkflow.client",
    "now": "pyworkflow.context",
    "patched": "pyworkflow.context",
    "random": "pyworkflow.context",
    "resume_hook": "pyworkflow.client",
    "scheduled_at": "pyworkflow.context",
    "shield": "pyworkflow.shielding",
    "shutdown": "pyworkflow.runtime",
    "sleep": "pyworkflow.context",
    "start": "pyworkflow.client",
    "start_child": "pyworkflow.children",
    "start_workflow": "pyworkflow.client",
    "step": "pyworkflow.step",
    "uuid4": "pyworkflow.context",
    "workflow": "pyworkflow.workflow",
    "workflow_logger": "pyworkflow.context",
}


def _load(name: str) -> Any:
    """Import the module defining public ``name`` and bind ``name`` here (once)."""
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


_silenced = False


class _Package(types.ModuleType):
    """The class of the ``pyworkflow`` module: it sees each submodule as it is bound.

    Python binds a submodule onto its package (``setattr``) when the submodule
    has finished importing; that is when this class acts:

    - The first binding silences the library's logs (and installed plugins'),
      :func:`pyworkflow.logs.silence_library`, before any PyWorkflow code can
      run: every use of PyWorkflow imports a submodule first, and
      ``import pyworkflow`` alone pays for neither loguru nor the
      entry-point scan. The command-line package does not count: it logs
      nothing itself, its commands import the modules that do, and
      ``pyworkflow --help`` stays fast.
    - ``pyworkflow.step`` and ``pyworkflow.workflow`` are submodules and public
      names (the decorators): binding such a submodule binds the public name
      instead, as the eager ``from pyworkflow.step import step`` used to.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        global _silenced
        if isinstance(value, types.ModuleType):
            if _EXPORTS.get(name) == value.__name__:
                value = getattr(value, name)
            logs = sys.modules.get("pyworkflow.logs")
            # While pyworkflow.logs itself is importing (it binds what it imports
            # first), wait for it to be bound.
            ready = logs is None or hasattr(logs, "silence_library")
            if not _silenced and name != "cli" and ready:
                _silenced = True
                from pyworkflow.logs import silence_library

                silence_library()
        super().__setattr__(name, value)


if not TYPE_CHECKING:  # type checkers see the imports above; an unknown name stays an error

    def __getattr__(name: str) -> Any:
        if name in _EXPORTS:
            return _load(name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(_EXPORTS))


sys.modules[__name__].__class__ = _Package

__all__ = [
    "ChildHandle",
    "ChildWorkflowError",
    "ConfigError",
    "Cron",
    "Event",
    "EventLimitError",
    "EventType",
    "Every",
    "FatalError",
    "Hook",
    "HookNotFoundError",
    "HookTimeoutError",
    "NonDeterminismError",
    "PayloadTooLargeError",
    "PayloadValidationError",
    "PyWorkflowError",
    "RetryableError",
    "RunInfo",
    "RunNotFoundError",
    "RunPage",
    "RunStatus",
    "ScheduleExistsError",
    "ScheduleNotFoundError",
    "SerializationError",
    "Step",
    "StepContext",
    "StepFailedError",
    "StreamItem",
    "Workflow",
    "WorkflowCancelledError",
    "WorkflowFailedError",
    "WorkflowTimeoutError",
    "__version__",
    "acancel",
    "acreate_schedule",
    "aexecute",
    "aexecute_workflow",
    "aget_events",
    "aget_result",
    "aget_run",
    "alist_runs",
    "aresume_hook",
    "astart",
    "astart_workflow",
    "cancel",
    "configure",
    "continue_as_new",
    "create_hook",
    "create_schedule",
    "deprecate_patch",
    "disable_logging",
    "enable_logging",
    "execute",
    "execute_workflow",
    "first",
    "get_events",
    "get_result",
    "get_run",
    "get_step_context",
    "list_runs",
    "now",
    "patched",
    "random",
    "read_stream",
    "read_stream_sync",
    "resume_hook",
    "scheduled_at",
    "shield",
    "shutdown",
    "sleep",
    "start",
    "start_child",
    "start_workflow",
    "step",
    "uuid4",
    "workflow",
    "workflow_logger",
    "write_stream",
    "write_stream_sync",
]

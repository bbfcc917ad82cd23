"""PyWorkflow: durable, event-sourced workflows in plain async Python."""

from __future__ import annotations

from pyworkflow.client import (
    RunInfo,
    acancel,
    aget_events,
    aget_result,
    aget_run,
    alist_runs,
    aresume_hook,
    astart,
    astart_workflow,
    cancel,
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
    create_hook,
    first,
    get_step_context,
    now,
    random,
    sleep,
    uuid4,
    workflow_logger,
)
from pyworkflow.errors import (
    ConfigError,
    FatalError,
    HookNotFoundError,
    NonDeterminismError,
    PayloadTooLargeError,
    PayloadValidationError,
    PyWorkflowError,
    RetryableError,
    RunNotFoundError,
    SerializationError,
    StepFailedError,
    WorkflowCancelledError,
    WorkflowFailedError,
)
from pyworkflow.hooks import Hook
from pyworkflow.logs import disable_logging, enable_logging, silence_library
from pyworkflow.models import Event, EventType, RunPage, RunStatus
from pyworkflow.runtime import configure, shutdown
from pyworkflow.step import Step, step
from pyworkflow.workflow import Workflow, workflow

silence_library()

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Event",
    "EventType",
    "FatalError",
    "Hook",
    "HookNotFoundError",
    "NonDeterminismError",
    "PayloadTooLargeError",
    "PayloadValidationError",
    "PyWorkflowError",
    "RetryableError",
    "RunInfo",
    "RunNotFoundError",
    "RunPage",
    "RunStatus",
    "SerializationError",
    "Step",
    "StepContext",
    "StepFailedError",
    "Workflow",
    "WorkflowCancelledError",
    "WorkflowFailedError",
    "__version__",
    "acancel",
    "aget_events",
    "aget_result",
    "aget_run",
    "alist_runs",
    "aresume_hook",
    "astart",
    "astart_workflow",
    "cancel",
    "configure",
    "create_hook",
    "disable_logging",
    "enable_logging",
    "first",
    "get_events",
    "get_result",
    "get_run",
    "get_step_context",
    "list_runs",
    "now",
    "random",
    "resume_hook",
    "shutdown",
    "sleep",
    "start",
    "start_workflow",
    "step",
    "uuid4",
    "workflow",
    "workflow_logger",
]

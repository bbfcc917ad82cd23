"""PyWorkflow: durable, event-sourced workflows in plain async Python."""

from __future__ import annotations

from loguru import logger

from pyworkflow.client import (
    RunInfo,
    acancel,
    aget_events,
    aget_result,
    aget_run,
    astart,
    astart_workflow,
    cancel,
    get_events,
    get_result,
    get_run,
    start,
    start_workflow,
)
from pyworkflow.context import (
    StepContext,
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
    NonDeterminismError,
    PayloadTooLargeError,
    PyWorkflowError,
    RetryableError,
    RunNotFoundError,
    SerializationError,
    StepFailedError,
    WorkflowCancelledError,
    WorkflowFailedError,
)
from pyworkflow.logs import disable_logging, enable_logging
from pyworkflow.models import Event, EventType, RunStatus
from pyworkflow.runtime import configure, shutdown
from pyworkflow.step import Step, step
from pyworkflow.workflow import Workflow, workflow

logger.disable("pyworkflow")

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Event",
    "EventType",
    "FatalError",
    "NonDeterminismError",
    "PayloadTooLargeError",
    "PyWorkflowError",
    "RetryableError",
    "RunInfo",
    "RunNotFoundError",
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
    "astart",
    "astart_workflow",
    "cancel",
    "configure",
    "disable_logging",
    "enable_logging",
    "get_events",
    "get_result",
    "get_run",
    "get_step_context",
    "now",
    "random",
    "shutdown",
    "sleep",
    "start",
    "start_workflow",
    "step",
    "uuid4",
    "workflow",
    "workflow_logger",
]

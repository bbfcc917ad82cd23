"""The public surface is pinned: changing it is a deliberate, reviewed act."""

from __future__ import annotations

import pyworkflow

EXPECTED = {
    "ConfigError", "Event", "EventType", "FatalError", "NonDeterminismError",
    "PayloadTooLargeError", "PyWorkflowError", "RetryableError", "RunInfo", "RunNotFoundError",
    "RunStatus", "SerializationError", "Step", "StepContext", "StepFailedError", "Workflow",
    "WorkflowCancelledError", "WorkflowFailedError", "__version__", "acancel", "aget_events",
    "aget_result", "aget_run", "astart", "astart_workflow", "cancel", "configure",
    "disable_logging", "enable_logging", "get_events", "get_result", "get_run",
    "get_step_context", "now", "random", "shutdown", "sleep", "start", "start_workflow", "step",
    "uuid4", "workflow", "workflow_logger", "Hook", "HookNotFoundError", "PayloadValidationError",
    "RunPage", "alist_runs", "aresume_hook", "create_hook", "list_runs", "resume_hook", "first",
    "continue_as_new",
    "patched", "deprecate_patch",
    "WorkflowTimeoutError",
    "start_child", "ChildHandle", "ChildWorkflowError",
    "Cron", "Every", "create_schedule", "acreate_schedule", "scheduled_at", "ScheduleNotFoundError",
    "ScheduleExistsError",
    "StreamItem", "read_stream", "read_stream_sync", "write_stream", "write_stream_sync",
    "HookTimeoutError", "shield", "EventLimitError",
    "execute", "aexecute", "execute_workflow", "aexecute_workflow",
}  # fmt: skip


def test_all_is_pinned() -> None:
    assert set(pyworkflow.__all__) == EXPECTED


def test_every_name_in_all_exists() -> None:
    for name in pyworkflow.__all__:
        assert hasattr(pyworkflow, name), name


def test_library_is_quiet_on_import() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", "import pyworkflow"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout == "" and out.stderr == ""

"""The PyWorkflow exception family: what users raise, catch, and see."""

from __future__ import annotations

from datetime import datetime, timedelta

__all__ = [
    "ChildWorkflowError",
    "ConcurrencyError",
    "ConfigError",
    "CorruptDataError",
    "EventLimitError",
    "FatalError",
    "HookNotFoundError",
    "HookTimeoutError",
    "HookTokenConflictError",
    "NonDeterminismError",
    "PayloadTooLargeError",
    "PayloadValidationError",
    "PluginError",
    "PyWorkflowError",
    "RetryableError",
    "RunNotFoundError",
    "ScheduleExistsError",
    "ScheduleNotFoundError",
    "SerializationError",
    "StepFailedError",
    "StorageUnavailableError",
    "WorkflowCancelledError",
    "WorkflowFailedError",
    "WorkflowNotFoundError",
    "WorkflowTimeoutError",
]


class PyWorkflowError(Exception):
    """Base class of every error PyWorkflow raises."""


class FatalError(PyWorkflowError):
    """Raised in a step to fail it at once, without retrying."""


class RetryableError(PyWorkflowError):
    """Raised in a step to ask for a retry, optionally after ``retry_after``.

    ``retry_after`` is a duration string (``"30s"``), a number of seconds or a
    ``timedelta``; it overrides the step's backoff for this attempt.

    ```python
    from pyworkflow import RetryableError, step

    @step(max_retries=10)
    async def call_api(response_status: int) -> None:
        if response_status == 429:
            raise RetryableError("rate limited", retry_after="30s")
    ```
    """

    def __init__(self, message: str = "", retry_after: str | float | timedelta | None = None):
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.retry_after))


class StepFailedError(PyWorkflowError):
    """A step's final failure whose original exception type could not be rebuilt.

    Carries the original ``error_type``, ``message`` and ``traceback`` text.
    """

    def __init__(self, message: str, *, error_type: str = "", traceback: str = "", step: str = ""):
        super().__init__(message)
        self.error_type = error_type
        self.traceback = traceback
        self.step = step

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_step_failed, (str(self), self.error_type, self.traceback, self.step))


def _rebuild_step_failed(message: str, error_type: str, tb: str, step: str) -> StepFailedError:
    return StepFailedError(message, error_type=error_type, traceback=tb, step=step)


class NonDeterminismError(PyWorkflowError):
    """Replay met an operation that does not match the recorded event log."""


class WorkflowFailedError(PyWorkflowError):
    """``get_result`` on a failed run whose error type could not be rebuilt."""

    def __init__(self, message: str, *, run_id: str = "", error_type: str = "") -> None:
        super().__init__(message)
        self.run_id = run_id
        self.error_type = error_type


class WorkflowCancelledError(PyWorkflowError):
    """``get_result`` on a run that ended ``cancelled``."""


class WorkflowTimeoutError(PyWorkflowError):
    """A run outlived its workflow timeout: it ended ``failed`` with this error.

    ``timeout`` is the timeout in seconds, ``deadline`` the time it ran out
    (start plus timeout), ``run_id`` the run. ``get_result`` raises it.
    """

    def __init__(
        self,
        message: str,
        *,
        run_id: str = "",
        timeout: float | None = None,
        deadline: datetime | None = None,
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.timeout = timeout
        self.deadline = deadline


class ChildWorkflowError(PyWorkflowError):
    """A child run awaited by its parent failed, was cancelled or timed out.

    Raised in the parent workflow; the child's own error (rebuilt where its
    type can be, a :class:`WorkflowCancelledError` for a cancelled child) is
    its ``__cause__`` (also ``child_error``, which survives the error being
    stored as the parent's own). ``run_id`` is the child's run id (the last
    run of its chain if it continued as new), ``workflow`` its workflow name,
    ``status`` how it ended (``failed`` or ``cancelled``).
    """

    def __init__(
        self,
        message: str,
        *,
        run_id: str = "",
        workflow: str = "",
        status: str = "",
        child_error: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.workflow = workflow
        self.status = status
        self.child_error = child_error

    def __setattr__(self, name: str, value: object) -> None:
        super().__setattr__(name, value)
        if name == "child_error" and (value is None or isinstance(value, BaseException)):
            self.__cause__ = value  # set again when a stored error is rebuilt

    def __reduce__(self) -> tuple[object, ...]:
        args = (str(self), self.run_id, self.workflow, self.status, self.child_error)
        return (_rebuild_child_error, args)


def _rebuild_child_error(
    message: str, run_id: str, workflow: str, status: str, cause: BaseException | None = None
) -> ChildWorkflowError:
    return ChildWorkflowError(
        message, run_id=run_id, workflow=workflow, status=status, child_error=cause
    )


class RunNotFoundError(PyWorkflowError, KeyError):
    """No run with this id exists in the configured storage."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "run not found"


class ScheduleNotFoundError(PyWorkflowError, KeyError):
    """No schedule with this name exists in the configured storage."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "schedule not found"


class ScheduleExistsError(PyWorkflowError, ValueError):
    """A schedule with this name exists (``create_schedule(..., replace=True)`` replaces it)."""


class WorkflowNotFoundError(PyWorkflowError, LookupError):
    """No workflow with this name is registered in this process."""


class StepNotFoundError(PyWorkflowError, LookupError):
    """No step with this name is registered in this process (a worker running dispatched steps)."""


class ConcurrencyError(PyWorkflowError):
    """An append carried a stale ``expected_seq``: another writer got there first."""

    def __init__(self, run_id: str, expected_seq: int, actual_seq: int) -> None:
        super().__init__(f"run {run_id}: expected last seq {expected_seq}, found {actual_seq}")
        self.run_id = run_id
        self.expected_seq = expected_seq
        self.actual_seq = actual_seq


class SerializationError(PyWorkflowError, TypeError):
    """A value could not be serialized or deserialized."""


class PayloadTooLargeError(FatalError, SerializationError):
    """A serialized input, result or error is over the configured size limit."""


class CorruptDataError(PyWorkflowError):
    """A stored row or event payload could not be decoded."""


class StorageUnavailableError(PyWorkflowError, ConnectionError):
    """The storage server could not be reached within the backend's reconnect timeout."""


class ConfigError(PyWorkflowError, ValueError):
    """Invalid configuration: an unknown key, plugin name or bad value."""


class PluginError(PyWorkflowError):
    """A plugin registered something invalid (for example a duplicate name)."""


class HookNotFoundError(PyWorkflowError, LookupError):
    """No live hook has this token (never created, already disposed, or timed out)."""


class HookTimeoutError(PyWorkflowError, TimeoutError):
    """Raised in a workflow that awaits a hook whose ``timeout`` ran out.

    ``create_hook(timeout="2d")`` gives the hook a deadline, its creation time
    plus the timeout, recorded when the hook is created. When it passes, the
    hook is disposed (later payloads are refused as for any disposed hook) and
    ``await hook`` raises this error once the payloads recorded before the
    deadline are taken; ``async for`` over the hook ends instead. ``token`` is
    the hook's token, ``timeout`` the timeout in seconds, ``deadline`` when it
    ran out.
    """

    def __init__(
        self,
        message: str,
        *,
        token: str = "",
        timeout: float | None = None,
        deadline: datetime | None = None,
    ) -> None:
        super().__init__(message)
        self.token = token
        self.timeout = timeout
        self.deadline = deadline

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_hook_timeout, (str(self), self.token, self.timeout, self.deadline))


def _rebuild_hook_timeout(
    message: str, token: str, timeout: float | None, deadline: datetime | None
) -> HookTimeoutError:
    return HookTimeoutError(message, token=token, timeout=timeout, deadline=deadline)


class EventLimitError(PyWorkflowError):
    """A run's event log reached the hard limit (``event_hard_limit``): the run failed.

    ``run_id`` is the run, ``limit`` the hard limit and ``events`` how many
    events the log held when the limit stopped it. ``get_result`` raises it.
    Retrying the run fails it again at once unless the limit is raised; a
    workflow that loops for ever should call ``continue_as_new``.
    """

    def __init__(self, message: str, *, run_id: str = "", limit: int = 0, events: int = 0) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.limit = limit
        self.events = events

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_event_limit, (str(self), self.run_id, self.limit, self.events))


def _rebuild_event_limit(message: str, run_id: str, limit: int, events: int) -> EventLimitError:
    return EventLimitError(message, run_id=run_id, limit=limit, events=events)


class HookTokenConflictError(PyWorkflowError):
    """A workflow created a hook with a token another live hook already uses."""


class PayloadValidationError(PyWorkflowError, ValueError):
    """A hook payload does not fit the hook's schema; ``errors`` lists why."""

    def __init__(self, message: str, errors: list[str]) -> None:
        super().__init__(message)
        self.errors = errors

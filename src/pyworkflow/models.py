"""Frozen records stored and returned by PyWorkflow: runs, events, pages."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from pyworkflow.clock import installed_clock as _installed_clock

__all__ = [
    "ACTIVE_STATUSES",
    "CatchupPolicy",
    "Event",
    "EventType",
    "HookRecord",
    "NewEvent",
    "OverlapPolicy",
    "QueueLimits",
    "QueueStats",
    "Run",
    "RunPage",
    "RunPatch",
    "RunStatus",
    "Schedule",
    "StepCheckpoint",
    "StepLease",
    "StreamChunk",
    "shown_payload",
    "utcnow",
]

_datetime_now = datetime.now


def utcnow() -> datetime:
    """The current time as an aware UTC datetime, by the clock of the runtime running here.

    That is the wall clock, except under a runtime given a clock of its own
    (the test harness's virtual time; see :mod:`pyworkflow.clock`).
    """
    clock = _installed_clock()
    return _datetime_now(UTC) if clock is None else clock.now()


class RunStatus(enum.StrEnum):
    """Lifecycle of a run."""

    PENDING = "pending"
    RUNNING = "running"
    SUSPENDED = "suspended"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Ended by ``continue_as_new``: the chain goes on in the next run (``RunInfo.continued_to``).
    CONTINUED = "continued"
    #: Waiting in its queue for a place (flow control, ``docs/queues.md``): not due, not claimed,
    #: until a worker admits it (then ``pending``, due at once).
    QUEUED = "queued"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.CONTINUED}
)


class EventType(enum.StrEnum):
    """Every event type the log may hold."""

    WORKFLOW_STARTED = "workflow_started"
    WORKFLOW_SUSPENDED = "workflow_suspended"
    WORKFLOW_RESUMED = "workflow_resumed"
    WORKFLOW_RETRIED = "workflow_retried"
    WORKFLOW_COMPLETED = "workflow_completed"
    WORKFLOW_FAILED = "workflow_failed"
    WORKFLOW_CANCELLED = "workflow_cancelled"
    #: The run ended by ``continue_as_new`` (payload: ``input``, ``next_run_id``).
    WORKFLOW_CONTINUED_AS_NEW = "workflow_continued_as_new"
    CANCEL_REQUESTED = "cancel_requested"
    STEP_SCHEDULED = "step_scheduled"
    STEP_STARTED = "step_started"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    STEP_RETRYING = "step_retrying"
    WAIT_CREATED = "wait_created"
    WAIT_COMPLETED = "wait_completed"
    VALUE_RECORDED = "value_recorded"
    #: ``patched(id)`` took the new branch here: ``{"kind": "patch", "name": id}`` (versioning).
    MARKER_RECORDED = "marker_recorded"
    HOOK_CREATED = "hook_created"
    HOOK_RECEIVED = "hook_received"
    HOOK_DISPOSED = "hook_disposed"
    #: A child run was started (payload: ``name``, ``child_run_id``, ``policy``, ``input``).
    CHILD_WORKFLOW_STARTED = "child_workflow_started"
    #: The child run completed (``child_run_id``, ``result``): written by the child's end.
    CHILD_WORKFLOW_COMPLETED = "child_workflow_completed"
    #: The child run failed or was cancelled (``child_run_id``, ``status``, ``error``).
    CHILD_WORKFLOW_FAILED = "child_workflow_failed"
    #: A worker met the run but does not know its workflow (``pyworkflow.unknown_workflow``).
    WORKFLOW_UNKNOWN = "workflow_unknown"
    #: The run's workflow timeout ran out (payload: ``deadline``, ``timeout``, ``cancelled``
    #: steps); ``workflow_failed`` with a ``WorkflowTimeoutError`` follows.
    WORKFLOW_TIMED_OUT = "workflow_timed_out"


#: Events written by someone other than the run's owner (clients, hooks, and
#: workers that do not know the workflow); replay takes none of them for a
#: decision of the workflow code.
EXTERNAL_EVENTS = frozenset(
    {
        EventType.CANCEL_REQUESTED,
        EventType.HOOK_RECEIVED,
        EventType.WORKFLOW_UNKNOWN,
        EventType.CHILD_WORKFLOW_COMPLETED,
        EventType.CHILD_WORKFLOW_FAILED,
    }
)


@attrs.frozen
class NewEvent:
    """An event not yet appended: storage assigns its ``seq``.

    ``payload`` holds JSON-compatible values only (str, int, float, bool,
    None, lists and dicts of those); user values inside it are already
    serialized strings.

    ``hook_secret`` travels beside a ``hook_created`` payload, never inside
    it: storage keeps it only in the live hook's record (where the server
    verifies signatures), so the event log never holds a secret.
    """

    type: EventType
    correlation_id: str | None = None
    payload: Mapping[str, Any] = attrs.field(factory=dict)
    timestamp: datetime = attrs.field(factory=utcnow)
    hook_secret: str | None = attrs.field(default=None, repr=False, kw_only=True)


@attrs.frozen
class Event:
    """One entry of a run's append-only log; ``seq`` is dense from 1."""

    run_id: str
    seq: int
    type: EventType
    correlation_id: str | None
    timestamp: datetime
    payload: Mapping[str, Any]


def shown_payload(event: Event) -> dict[str, Any]:
    """``event``'s payload as the API and CLI show it.

    A ``secret`` in a ``hook_created`` payload (written by versions before
    hook secrets moved out of the log) is masked as ``"***"``.
    """
    data = dict(event.payload)
    if event.type == EventType.HOOK_CREATED and data.get("secret") is not None:
        data["secret"] = "***"
    return data


@attrs.frozen
class Run:
    """A run's status row: a projection of its event log."""

    run_id: str
    workflow_name: str
    status: RunStatus
    input: str
    serializer: str
    created_at: datetime
    updated_at: datetime
    workflow_version: str | None = None
    result: str | None = None
    error: str | None = None
    error_message: str | None = None
    completed_at: datetime | None = None
    idempotency_key: str | None = None
    parent_run_id: str | None = None
    wake_at: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    last_seq: int = 0
    #: The queue the run was started in (flow control), or None.
    queue: str | None = None
    #: Its priority in the queue: higher is admitted sooner (see ``queue_rank``).
    priority: int = 0
    #: The partition (for example a customer id) whose own concurrency limit it counts against.
    partition_key: str | None = None
    #: While the run is queued or running, a second start with this key in the same queue
    #: returns this run instead of creating one.
    dedup_key: str | None = None
    #: The order of waiting runs in a queue, lowest first: enqueue time in epoch seconds minus
    #: ``priority`` times the queue's ``priority_aging`` (so a priority point is worth that
    #: much waiting, and the lowest priority is never starved).
    queue_rank: float | None = None
    #: When a worker admitted the run from its queue (None: never queued, or still waiting).
    admitted_at: datetime | None = None
    #: The worker that admitted it (``worker_concurrency`` counts by it).
    admitted_by: str | None = None


#: Statuses of a run that holds a place in its queue: admitted (or never queued) and not ended.
ACTIVE_STATUSES = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SUSPENDED})


@attrs.frozen
class QueueLimits:
    """What a worker may admit from one queue, checked in the storage's atomic admission.

    ``None`` is no limit. ``rate`` is ``(count, period)``: at most ``count``
    admissions in any window of ``period`` (a sliding window over
    ``admitted_at``). ``partition_concurrency`` limits the active runs per
    ``partition_key`` (runs without one are not limited by it).
    ``worker_concurrency`` limits the active runs admitted by the ``worker``
    passed to :meth:`~pyworkflow.storage.base.Storage.admit_queued_runs`.
    """

    concurrency: int | None = None
    worker_concurrency: int | None = None
    partition_concurrency: int | None = None
    rate: tuple[int, timedelta] | None = None


@attrs.frozen
class QueueStats:
    """One queue's depth and load, as ``Storage.queue_stats`` counts them."""

    queue: str
    #: Runs waiting to be admitted (status ``queued``).
    waiting: int
    #: Runs of the queue that are pending, running or suspended (they hold a place).
    active: int
    #: Runs admitted at or after the ``since`` of the call.
    admitted: int


class OverlapPolicy(enum.StrEnum):
    """What a schedule does at a tick while the run of its previous tick has not ended."""

    #: Start no run for this tick (the default).
    SKIP = "skip"
    #: Start the tick's run anyway.
    ALLOW = "allow"
    #: Request cancellation of the previous run, then start the tick's run.
    CANCEL_PREVIOUS = "cancel_previous"


class CatchupPolicy(enum.StrEnum):
    """What a schedule does with ticks it missed (fired later than its ``grace``)."""

    #: Fire none of them.
    NONE = "none"
    #: Fire the latest one only: one run stands for the downtime (the default).
    LATEST = "latest"
    #: Fire each of them that is within ``catchup_window`` of now, oldest first.
    ALL = "all"


@attrs.frozen
class Schedule:
    """A schedule's row: which workflow to start at which ticks, and where it stands.

    ``input`` is the serialized ``{"args", "kwargs"}`` of every run it starts.
    ``next_fire_at`` is the next tick not yet fired (None: never again).
    Storage keeps the row as it is given; the firing rules live in
    :mod:`pyworkflow.schedules`.
    """

    name: str
    workflow_name: str
    cron: str
    timezone: str
    input: str
    serializer: str
    created_at: datetime
    updated_at: datetime
    next_fire_at: datetime | None
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    catchup: CatchupPolicy = CatchupPolicy.LATEST
    #: Seconds: a tick fired later than this after its time counts as missed.
    grace: float = 60.0
    #: Seconds: with ``catchup = all``, missed ticks older than this are not fired.
    catchup_window: float = 86400.0
    queue: str | None = None
    paused: bool = False
    #: ``"code"`` (declared on a workflow, kept in step with it) or ``"api"``.
    origin: str = "api"
    last_fire_at: datetime | None = None
    last_run_id: str | None = None


@attrs.frozen
class RunPatch:
    """Changes to a run's row, applied in the same transaction as an append.

    ``None`` leaves a field as it is, except ``wake_at`` which is applied
    whenever ``set_wake`` is true (``None`` then clears it). ``clear_outcome``
    empties ``result``, ``error``, ``error_message`` and ``completed_at``
    (a failed run being retried).
    """

    status: RunStatus | None = None
    result: str | None = None
    error: str | None = None
    error_message: str | None = None
    completed_at: datetime | None = None
    set_wake: bool = False
    wake_at: datetime | None = None
    release_lease: bool = False
    clear_outcome: bool = False


@attrs.frozen
class RunPage:
    """One page of ``list_runs``; pass ``next_cursor`` back for the next."""

    runs: list[Run]
    next_cursor: str | None = None


@attrs.frozen
class HookRecord:
    """A live hook: where payloads posted to ``token`` go.

    Written when a ``hook_created`` event is appended, removed with
    ``hook_disposed``; ``schema`` is the ``module:QualName`` of an attrs
    class payloads must fit, ``secret`` the optional HMAC key (kept here
    only, never in the event log, and left out of ``repr``).
    """

    token: str
    run_id: str
    correlation_id: str
    created_at: datetime
    schema: str | None = None
    secret: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class StepLease:
    """Who runs a dispatched step and until when (executors that run steps elsewhere).

    Written as ``queued:<attempt>`` when an activation dispatches the step,
    taken over by the worker that runs it and renewed while it runs. A
    lease past ``until`` means the attempt is lost: the step is dispatched again.
    """

    run_id: str
    step_id: str
    owner: str
    until: datetime


@attrs.frozen
class StreamChunk:
    """One chunk of a run's named stream (``docs/streams.md``): output, not history.

    ``seq`` is assigned by storage, dense from 1 per ``(run_id, stream)``.
    ``data`` is the chunk serialized by the run's serializer. A chunk written
    by a step carries the attempt that wrote it (``step_id``, ``attempt``)
    and ``index``, its place among that attempt's chunks of the stream; a
    chunk written by workflow code has ``step_id`` None and ``index`` its
    place among the workflow's chunks of the stream (the same at every
    replay). Storage keeps one chunk per ``(step_id, index)`` of a stream:
    see :meth:`~pyworkflow.storage.base.Storage.append_stream_chunk`.
    """

    run_id: str
    stream: str
    seq: int
    data: str
    step_id: str | None
    attempt: int | None
    index: int | None
    created_at: datetime


@attrs.frozen
class StepCheckpoint:
    """The progress a step attempt saved with ``get_step_context().checkpoint(...)``.

    One per ``(run_id, step_id)``: the latest saved by the newest attempt
    (``docs/checkpoints.md``). ``data`` is the state serialized by the run's
    serializer; ``attempt`` the attempt that saved it; ``saved_at`` when
    (aware UTC).
    """

    run_id: str
    step_id: str
    attempt: int
    data: str
    saved_at: datetime

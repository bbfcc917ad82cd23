"""Child runs seen from outside an activation: telling a parent, closing a child (issue 15).

The activation's side is :mod:`pyworkflow.engine.children`; these functions
act on other runs' logs (a parent's, a child's) through the journal, with the
same expected-seq retries as ``pyworkflow.cancel``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from pyworkflow.engine.continuation import next_run_id
from pyworkflow.errors import ConcurrencyError, RunNotFoundError, WorkflowCancelledError
from pyworkflow.models import Event, EventType, NewEvent, Run, RunPatch, RunStatus, utcnow

if TYPE_CHECKING:
    from pyworkflow.runtime import Runtime

__all__ = [
    "close_child",
    "last_of_chain",
    "listed",
    "notify_parent",
    "open_children",
    "outcome_event",
]

_STARTED = EventType.CHILD_WORKFLOW_STARTED
_ENDS = frozenset({EventType.CHILD_WORKFLOW_COMPLETED, EventType.CHILD_WORKFLOW_FAILED})


def open_children(events: Sequence[Event | NewEvent]) -> dict[str, dict[str, Any]]:
    """The ``child_workflow_started`` payloads of ``events`` with no outcome yet, by id."""
    found: dict[str, dict[str, Any]] = {}
    for event in events:
        cid = event.correlation_id or ""
        if event.type is _STARTED:
            found[cid] = dict(event.payload)
        elif event.type in _ENDS:
            found.pop(cid, None)
    return found


def outcome_event(
    runtime: Runtime, child: Run, correlation_id: str, name: str, payload: dict[str, Any]
) -> NewEvent:
    """The event telling a parent that ``child`` ended (``payload``: its ending event's)."""
    base = {"name": name, "child_run_id": child.run_id}
    if child.status is RunStatus.COMPLETED:
        data = payload.get("result", child.result)
        completed = {**base, "result": data}
        return NewEvent(EventType.CHILD_WORKFLOW_COMPLETED, correlation_id, completed)
    error, message = payload.get("error", child.error), payload.get("error_message")
    message = message or child.error_message
    if child.status is RunStatus.CANCELLED:
        cause = WorkflowCancelledError(f"child run {child.run_id} was cancelled")
        error, message = runtime.serializer_for(child).dumps(cause), str(cause)
    details = {"status": child.status.value, "error": error, "error_message": message}
    return NewEvent(EventType.CHILD_WORKFLOW_FAILED, correlation_id, {**base, **details})


async def notify_parent(runtime: Runtime, parent_run_id: str, event: NewEvent) -> bool:
    """Append ``event`` to the parent's log and make it due; False if the parent ended.

    Children ending in this process at once queue their notices per parent:
    whoever holds the parent's lock appends all those waiting in one append.
    Without it, many children racing for the parent's next ``seq`` retried each
    other's conflicts (a 1,000-child fan-out on SQLite spent most of its time so).
    """
    entry = _notices.get(parent_run_id)
    if entry is None:
        entry = _notices[parent_run_id] = _Notices(anyio.Lock())
    entry.users += 1
    entry.pending.append(event)
    try:
        async with entry.lock:
            if not entry.pending:
                return True  # another child's append took this notice along
            batch, entry.pending = entry.pending, []
            return await _append_notices(runtime, parent_run_id, batch)
    finally:
        entry.users -= 1
        if entry.users == 0 and _notices.get(parent_run_id) is entry:
            del _notices[parent_run_id]


async def _append_notices(runtime: Runtime, parent_run_id: str, batch: list[NewEvent]) -> bool:
    while True:
        try:
            parent = await runtime.storage.get_run(parent_run_id)
        except RunNotFoundError:
            return False
        if parent.status.is_terminal:
            return False
        patch = RunPatch(set_wake=True, wake_at=utcnow())
        try:
            await runtime.journal.append(parent_run_id, parent.last_seq, batch, patch, due=True)
        except ConcurrencyError:
            continue
        return True


@attrs.define(eq=False)
class _Notices:
    """The notices of this process's children to one parent, and who is writing them."""

    lock: anyio.Lock
    pending: list[NewEvent] = attrs.field(factory=list)
    users: int = 0


#: Notices on their way to each parent, by parent run id (entries go when unused).
_notices: dict[str, _Notices] = {}


async def last_of_chain(runtime: Runtime, run_id: str) -> Run:
    """Run ``run_id``, or the run its chain of continue-as-new reached."""
    run = await runtime.storage.get_run(run_id)
    while run.status is RunStatus.CONTINUED:
        run = await runtime.storage.get_run(next_run_id(run.run_id))
    return run


async def close_child(runtime: Runtime, run_id: str, policy: str, reason: str) -> str:
    """Apply the parent-close ``policy`` to child ``run_id``; what happened, in a word.

    ``cancel requested``, ``terminated``, ``abandoned``, or ``already ended``.
    """
    if policy == "abandon":
        return "abandoned"
    while True:
        try:
            run = await last_of_chain(runtime, run_id)
        except RunNotFoundError:
            return "already ended"
        if run.status.is_terminal:
            return "already ended"
        if policy != "terminate":
            event = NewEvent(EventType.CANCEL_REQUESTED, None, {"reason": reason})
            patch = RunPatch(set_wake=True, wake_at=utcnow())
            try:
                await runtime.journal.append(run.run_id, run.last_seq, [event], patch, due=True)
            except ConcurrencyError:
                continue
            return "cancel requested"
        events = await runtime.storage.get_events(run.run_id)
        hooks: dict[str, str] = {}
        for e in events:
            if e.type is EventType.HOOK_CREATED:
                hooks[e.correlation_id or ""] = str(e.payload.get("token"))
            elif e.type is EventType.HOOK_DISPOSED:
                hooks.pop(e.correlation_id or "", None)
        ending = [
            NewEvent(EventType.HOOK_DISPOSED, cid, {"name": "hook", "token": token})
            for cid, token in hooks.items()
        ]
        grandchildren = open_children(events)
        ending.append(
            NewEvent(
                EventType.WORKFLOW_CANCELLED,
                None,
                {"terminated": True, "reason": reason, "children": listed(grandchildren)},
            )
        )
        patch = RunPatch(
            status=RunStatus.CANCELLED,
            completed_at=utcnow(),
            set_wake=True,
            wake_at=None,
            release_lease=True,
        )
        try:
            await runtime.journal.append(
                run.run_id, run.last_seq, ending, patch, workflow=run.workflow_name
            )
        except ConcurrencyError:
            continue
        why = f"parent run {run.run_id} was terminated"
        for child in grandchildren.values():
            await close_child(runtime, child["child_run_id"], child.get("policy", ""), why)
        return "terminated"


def listed(children: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"run_id": c.get("child_run_id"), "name": c.get("name"), "policy": c.get("policy")}
        for c in children.values()
    ]

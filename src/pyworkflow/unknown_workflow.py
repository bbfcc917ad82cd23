"""Runs of a workflow that a worker does not know: they wait, visibly.

A worker that claims a run whose workflow name is not registered in its
process leaves the run as it is (``pending``, or ``suspended``/``running``
for a run already under way): a deploy may bring a worker that knows the
workflow. The run is backed off and tried again later, and the fact is made
visible:

- the worker appends one ``workflow_unknown`` event (workflow name, worker,
  host, pid) per (worker process, workflow name, run), with a
  compare-and-set append, so every storage backend keeps it
  with no schema change; replay ignores it (an external event);
- it logs one warning per unknown workflow name (later meetings log at
  DEBUG), not one per poll.

The notes that count (:func:`unknown_notes`) are those recorded after the
last event an activation that ran the workflow wrote: once a worker that
knows the workflow picks the run up, the notes clear. ``pyworkflow runs
show`` and ``GET /api/runs/{run_id}`` show them, through :func:`note_json`.
"""

from __future__ import annotations

import os
import socket
import weakref
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
from loguru import logger

from pyworkflow.engine import is_external
from pyworkflow.errors import ConcurrencyError
from pyworkflow.models import Event, EventType, NewEvent, Run

if TYPE_CHECKING:
    from pyworkflow.runtime import Runtime

__all__ = ["UnknownWorkflowNote", "describe", "note_json", "note_unknown", "unknown_notes"]

#: Events that do not mean a worker ran the workflow code (the client writes them).
_NOT_RUN_BY_CODE = frozenset({EventType.WORKFLOW_STARTED, EventType.WORKFLOW_RETRIED})

#: Workflow names each runtime (one per worker process) has warned about.
_warned: weakref.WeakKeyDictionary[Runtime, set[str]] = weakref.WeakKeyDictionary()


@attrs.frozen
class UnknownWorkflowNote:
    """A worker met the run and does not know its workflow, since ``since``."""

    workflow: str
    worker: str
    host: str
    pid: int
    since: datetime


def _note(event: Event) -> UnknownWorkflowNote:
    payload = event.payload
    return UnknownWorkflowNote(
        workflow=str(payload.get("workflow", "")),
        worker=str(payload.get("worker", "")),
        host=str(payload.get("host", "")),
        pid=int(payload.get("pid") or 0),
        since=event.timestamp,
    )


def unknown_notes(events: Iterable[Event]) -> list[UnknownWorkflowNote]:
    """The notes of workers that do not know the run's workflow, still current.

    A note stops counting once an activation that ran the workflow code wrote
    to the log after it (every event but external ones, ``workflow_started``
    and ``workflow_retried``).
    """
    notes: list[UnknownWorkflowNote] = []
    for event in events:
        if event.type == EventType.WORKFLOW_UNKNOWN:
            notes.append(_note(event))
        elif not is_external(event) and event.type not in _NOT_RUN_BY_CODE:
            notes = []
    return notes


def note_json(note: UnknownWorkflowNote) -> dict[str, Any]:
    """A note as the CLI (``--json``) and the HTTP API show it."""
    return {
        "workflow": note.workflow,
        "worker": note.worker,
        "host": note.host,
        "pid": note.pid,
        "since": note.since.isoformat(),
    }


def describe(note: UnknownWorkflowNote) -> str:
    """One human line: which worker does not know which workflow, since when."""
    return (
        f"workflow {note.workflow!r} is unknown to worker {note.worker} "
        f"(host {note.host}, pid {note.pid}) since {note.since.isoformat()}"
    )


async def note_unknown(runtime: Runtime, run: Run, owner: str, error: Exception) -> None:
    """Record (once per worker process) and log (once per name) that ``run``'s workflow is unknown.

    ``owner`` is the worker's lease owner; ``error`` the ``WorkflowNotFoundError``
    met. Never raises: the run is backed off by the caller either way.
    """
    name = run.workflow_name
    log = logger.bind(run_id=run.run_id, workflow=name, worker=owner)
    warned = _warned.setdefault(runtime, set())
    if name in warned:
        log.debug("workflow {!r} unknown to this worker; the run waits", name)
    else:
        warned.add(name)
        log.warning(
            "{}. Runs of {!r} stay waiting (not failed) until a worker that knows the "
            "workflow picks them up; `pyworkflow runs show RUN_ID` lists the workers that "
            "do not know it. This is logged once per workflow name.",
            error,
            name,
        )
    host, pid = socket.gethostname(), os.getpid()
    try:
        events = await runtime.storage.get_events(run.run_id)
        if any(
            n.workflow == name and n.host == host and n.pid == pid for n in unknown_notes(events)
        ):
            return
        event = NewEvent(
            EventType.WORKFLOW_UNKNOWN,
            None,
            {
                "workflow": name,
                "worker": owner,
                "host": host,
                "pid": pid,
            },
        )
        expected = events[-1].seq if events else 0
        await runtime.journal.append(run.run_id, expected, [event], owner=owner)
    except ConcurrencyError:
        log.debug("the run moved on while noting its unknown workflow; noted next time")
        return
    except Exception:  # storage trouble: the back-off that follows says it again
        log.exception("could not record that the workflow is unknown to this worker")
        return

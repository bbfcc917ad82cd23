"""History files: a run and its event log as one versioned JSON document (``runs export``).

The format, version 1::

    {
      "format": "pyworkflow-history",
      "version": 1,
      "exported_at": "2026-11-28T18:30:00+00:00",
      "run": {"run_id": ..., "workflow": ..., "workflow_version": ..., "serializer": "json",
              "input": "<what the serializer wrote>", "status": "completed",
              "created_at": ..., "updated_at": ..., "completed_at": ..., "parent_run_id": ...,
              "result": "<what the serializer wrote>", "error_message": ...},
      "events": [{"seq": 1, "type": "workflow_started", "correlation_id": null,
                  "timestamp": "...", "payload": {...}}, ...]
    }

``input``, ``result`` and every user value inside a payload are the strings
the run's serializer wrote, copied unchanged, so a replay decodes exactly what
the run decoded. Hook tokens are written as ``***`` (a live hook's token lets
whoever holds it resume the run; replay does not need it) and so is a hook
secret an old log may hold; the run's idempotency key and serialized error
are left out. Readers refuse another ``format`` or a ``version`` they do not
know, naming the file and what is wrong.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from pyworkflow.errors import PyWorkflowError
from pyworkflow.models import Event, EventType, Run, RunStatus, shown_payload, utcnow
from pyworkflow.redaction import MASK

if TYPE_CHECKING:
    from pyworkflow.runtime import Runtime

__all__ = [
    "FORMAT",
    "VERSION",
    "History",
    "HistoryFormatError",
    "aexport_history",
    "dump_history",
    "export_history",
    "history_json",
    "load_history",
    "parse_history",
]

#: The ``format`` field of every history file.
FORMAT = "pyworkflow-history"
#: The version this module writes and reads.
VERSION = 1

_HOOK_EVENTS = frozenset({EventType.HOOK_CREATED, EventType.HOOK_RECEIVED, EventType.HOOK_DISPOSED})

#: Payload fields replay reads, by event type (each a string).
_NEEDED: dict[EventType, tuple[str, ...]] = {
    EventType.STEP_STARTED: ("name",),
    EventType.STEP_SCHEDULED: ("name",),
    EventType.STEP_COMPLETED: ("result",),
    EventType.STEP_RETRYING: ("due_at",),
    EventType.WAIT_CREATED: ("name", "due_at"),
    EventType.VALUE_RECORDED: ("kind", "value"),
    EventType.MARKER_RECORDED: ("kind", "name"),
    EventType.HOOK_CREATED: ("token",),
    EventType.HOOK_RECEIVED: ("data",),
}
#: Event types whose payload's ``due_at`` replay reads as a time.
_DUE = frozenset({EventType.STEP_RETRYING.value, EventType.WAIT_CREATED.value})


class HistoryFormatError(PyWorkflowError, ValueError):
    """A history file cannot be read: not JSON, another format or version, wrong fields.

    ``source`` is the file (or ``<dict>``) and ``problem`` what is wrong with it,
    when the error is about one history.
    """

    def __init__(self, message: str, *, source: str | None = None, problem: str | None = None):
        super().__init__(message)
        self.source = source
        self.problem = problem if problem is not None else message


def _bad(source: object, problem: str) -> HistoryFormatError:
    return HistoryFormatError(f"history {source}: {problem}", source=str(source), problem=problem)


@attrs.frozen
class History:
    """A loaded history: the run, its events, and where they came from (a path or ``<dict>``)."""

    source: str
    run: Run
    events: list[Event]


def _payload(event: Event) -> dict[str, Any]:
    data = shown_payload(event)  # masks a hook secret an old log holds
    if event.type in _HOOK_EVENTS and data.get("token") is not None:
        data["token"] = MASK
    return data


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def history_json(run: Run, events: list[Event]) -> dict[str, Any]:
    """The history document of ``run`` and its ``events`` (see the module docstring)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": utcnow().isoformat(),
        "run": {
            "run_id": run.run_id,
            "workflow": run.workflow_name,
            "workflow_version": run.workflow_version,
            "serializer": run.serializer,
            "input": run.input,
            "status": run.status.value,
            "created_at": _iso(run.created_at),
            "updated_at": _iso(run.updated_at),
            "completed_at": _iso(run.completed_at),
            "parent_run_id": run.parent_run_id,
            "result": run.result,
            "error_message": run.error_message,
        },
        "events": [
            {
                "seq": e.seq,
                "type": e.type.value,
                "correlation_id": e.correlation_id,
                "timestamp": e.timestamp.isoformat(),
                "payload": _payload(e),
            }
            for e in events
        ],
    }


def dump_history(run: Run, events: list[Event]) -> str:
    """The history document of ``run`` as JSON text (indented, ending with a newline)."""
    return json.dumps(history_json(run, events), indent=2, ensure_ascii=False) + "\n"


async def _read(runtime: Runtime, run_id: str) -> tuple[Run, list[Event]]:
    run = await runtime.storage.get_run(run_id)
    return run, await runtime.storage.get_events(run_id)


async def aexport_history(run_id: str) -> str:
    """``run_id``'s history file as text, read from the configured storage (async code).

    Raises :class:`~pyworkflow.errors.RunNotFoundError` for an unknown run.
    """
    from pyworkflow.runtime import get_runtime

    runtime = get_runtime()
    run, events = await runtime.acall(_read, runtime, run_id)
    return dump_history(run, events)


def export_history(run_id: str) -> str:
    """Sync form of :func:`aexport_history`.

    Raises :class:`~pyworkflow.errors.RunNotFoundError` for an unknown run.
    """
    from pyworkflow.runtime import get_runtime

    runtime = get_runtime()
    run, events = runtime.call(_read, runtime, run_id)
    return dump_history(run, events)


class _Reader:
    """Checks one document field by field; errors name the source and the field's path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> HistoryFormatError:
        return _bad(self.source, f"{where}: {problem}")

    def field(self, data: Mapping[str, Any], where: str, key: str, *types: type) -> Any:
        if key not in data:
            return self._missing(where, key, types)
        value = data[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise self.fail(f"{where}.{key}", f"expected {names}, got {json.dumps(value)[:60]}")
        return value

    def _missing(self, where: str, key: str, types: tuple[type, ...]) -> None:
        if type(None) in types:
            return None
        raise self.fail(where, f"missing field {key!r}")

    def moment(self, data: Mapping[str, Any], where: str, key: str, optional: bool) -> Any:
        types = (str, type(None)) if optional else (str,)
        text = self.field(data, where, key, *types)
        if text is None:
            return None
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise self.fail(f"{where}.{key}", f"not an ISO 8601 time: {text!r}") from None
        if moment.tzinfo is None:
            raise self.fail(f"{where}.{key}", f"a time without a time zone: {text!r}")
        return moment

    def run(self, data: Any) -> Run:
        if not isinstance(data, dict):
            raise self.fail("run", "expected an object")
        status = self.field(data, "run", "status", str)
        if status not in {s.value for s in RunStatus}:
            raise self.fail("run.status", f"unknown status {status!r}")
        created = self.moment(data, "run", "created_at", optional=False)
        return Run(
            run_id=self.field(data, "run", "run_id", str),
            workflow_name=self.field(data, "run", "workflow", str),
            status=RunStatus(status),
            input=self.field(data, "run", "input", str),
            serializer=self.field(data, "run", "serializer", str),
            created_at=created,
            updated_at=self.moment(data, "run", "updated_at", optional=True) or created,
            workflow_version=self.field(data, "run", "workflow_version", str, type(None)),
            result=self.field(data, "run", "result", str, type(None)),
            error_message=self.field(data, "run", "error_message", str, type(None)),
            completed_at=self.moment(data, "run", "completed_at", optional=True),
            parent_run_id=self.field(data, "run", "parent_run_id", str, type(None)),
        )

    def events(self, data: Any, run_id: str) -> list[Event]:
        if not isinstance(data, list):
            raise self.fail("events", "expected a list")
        known = {t.value for t in EventType}
        out: list[Event] = []
        for i, item in enumerate(data):
            where = f"events[{i}]"
            if not isinstance(item, dict):
                raise self.fail(where, "expected an object")
            seq = self.field(item, where, "seq", int)
            if seq != i + 1:
                raise self.fail(f"{where}.seq", f"expected {i + 1} (dense from 1), got {seq}")
            kind = self.field(item, where, "type", str)
            if kind not in known:
                raise self.fail(f"{where}.type", f"unknown event type {kind!r}")
            cid = self.field(item, where, "correlation_id", str, type(None))
            moment = self.moment(item, where, "timestamp", optional=False)
            payload = self.field(item, where, "payload", dict)
            for key in _NEEDED.get(EventType(kind), ()):
                self.field(payload, f"{where}.payload", key, str)
            if kind in _DUE:
                self.moment(payload, f"{where}.payload", "due_at", optional=False)
            out.append(Event(run_id, seq, EventType(kind), cid, moment, payload))
        return out


def parse_history(data: Any, source: str = "<dict>") -> History:
    """A history from its decoded JSON document; :class:`HistoryFormatError` names what is wrong."""
    reader = _Reader(source)
    if not isinstance(data, dict):
        raise reader.fail("document", "expected a JSON object")
    if data.get("format") != FORMAT:
        raise reader.fail("format", f"expected {FORMAT!r}, got {data.get('format')!r}")
    version = data.get("version")
    if version != VERSION or isinstance(version, bool):
        raise reader.fail(
            "version", f"version {version!r} is not one this PyWorkflow reads ({VERSION})"
        )
    run = reader.run(data.get("run"))
    return History(source, run, reader.events(data.get("events"), run.run_id))


def load_history(source: str | os.PathLike[str] | Mapping[str, Any]) -> History:
    """A history from a file path, or from an already-decoded document (a mapping)."""
    if isinstance(source, Mapping):
        return parse_history(dict(source))
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad(path, f"cannot read it: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _bad(path, f"not JSON: {exc}") from None
    return parse_history(data, str(path))

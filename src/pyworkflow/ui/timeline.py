"""A run's timeline: its event log turned into bars on a time axis (a pure function).

Each operation of the run gets a lane (one row): a step's attempts and the
retry waits between them share their step's lane; a sleep, a hook wait and a
child run each have their own. Bars of operations still going on end at
``now``; once the run has ended they end with it (outcome ``cancelled`` when
the run's end cut them short). Nothing here touches storage or the clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from pyworkflow.models import Event, EventType

__all__ = [
    "BAR_KINDS",
    "OUTCOMES",
    "Bar",
    "Tick",
    "Timeline",
    "build_timeline",
    "format_duration",
]

#: The kinds of bar, as ``data-kind`` shows them.
BAR_KINDS = ("step", "retry-wait", "sleep", "hook", "child")

#: A bar's outcome (``data-outcome``): a step attempt ``completed``, ``failed`` (for
#: good), ``retrying`` (failed, another attempt follows); a wait ``completed``; a bar
#: still going on is ``running``; one the run's end cut short is ``cancelled``.
OUTCOMES = ("completed", "failed", "retrying", "running", "cancelled")

_ENDS = frozenset(
    {
        EventType.WORKFLOW_COMPLETED,
        EventType.WORKFLOW_FAILED,
        EventType.WORKFLOW_CANCELLED,
        EventType.WORKFLOW_CONTINUED_AS_NEW,
    }
)

#: Tick steps of the axis, in seconds: round numbers of milliseconds, seconds, minutes, hours.
_TICK_STEPS = (
    *(ms / 1000 for ms in (1, 2, 5, 10, 20, 50, 100, 200, 500)),
    *(1.0, 2.0, 5.0, 10.0, 15.0, 30.0),
    *(minutes * 60.0 for minutes in (1, 2, 5, 10, 15, 30)),
    *(hours * 3600.0 for hours in (1, 2, 3, 6, 12, 24)),
)


@attrs.frozen
class Bar:
    """One bar of the timeline: a step attempt, a wait, a hook wait or a child run."""

    #: One of :data:`BAR_KINDS`.
    kind: str
    #: The step's name, ``sleep``, the hook's name or the child's workflow name.
    name: str
    #: The operation's correlation id (its lane).
    correlation_id: str | None
    start: datetime
    end: datetime
    #: One of :data:`OUTCOMES`.
    outcome: str
    #: The lane (row) of the operation, from 0 in order of first appearance.
    lane: int
    #: The attempt (steps), or the attempt that failed (retry waits); else None.
    attempt: int | None = None
    #: A short human text: an error message, a due time, a child's status...
    detail: str | None = None
    #: The child run's id (``child`` bars).
    child_run_id: str | None = None
    #: Where the bar starts and how wide it is, in percent of the axis.
    left: float = 0.0
    width: float = 0.0

    @property
    def duration(self) -> timedelta:
        """How long the bar lasts (to ``now`` for a running one)."""
        return self.end - self.start

    @property
    def label(self) -> str:
        """A sentence describing the bar, for its ``aria-label`` and the text alternative."""
        what = {
            "step": f"Step {self.name}, attempt {self.attempt}",
            "retry-wait": f"Retry wait of step {self.name} after attempt {self.attempt}",
            "sleep": f"Sleep {self.name}" if self.name != "sleep" else "Sleep",
            "hook": f"Hook {self.name}",
            "child": f"Child run {self.name}",
        }.get(self.kind, self.name)
        text = f"{what}: {self.outcome}, {format_duration(self.duration)}"
        if self.detail:
            text += f" ({self.detail})"
        return text


@attrs.frozen
class Tick:
    """A mark of the time axis: its position in percent and its label (time since start)."""

    left: float
    label: str


@attrs.frozen
class Timeline:
    """The bars of a run on one axis from ``start`` to ``end``."""

    start: datetime
    end: datetime
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    #: How many lanes (rows) the bars use.
    lanes: int
    #: Whether a bar still runs (it ends at ``now``).
    live: bool

    @property
    def duration(self) -> timedelta:
        """The span of the axis."""
        return self.end - self.start


def format_duration(delta: timedelta) -> str:
    """``delta`` for people: ``12 ms``, ``1.5 s``, ``2 m 3 s``, ``1 h 2 m``, ``3 d 4 h``."""
    seconds = max(delta.total_seconds(), 0.0)
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 10:
        return f"{seconds:.2f} s".replace(".00 s", " s")
    if seconds < 60:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} m" if minutes else f"{hours} h"
    return f"{minutes} m {secs} s" if secs else f"{minutes} m"


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@attrs.define
class _Open:
    """A bar not yet closed."""

    kind: str
    name: str
    cid: str | None
    start: datetime
    attempt: int | None = None
    detail: str | None = None
    child_run_id: str | None = None


@attrs.define
class _Builder:
    bars: list[Bar] = attrs.field(factory=list)
    lanes: dict[str, int] = attrs.field(factory=dict)
    #: open bars by key: ("step", cid, attempt), ("retry-wait", cid), (kind, cid)
    open: dict[tuple[Any, ...], _Open] = attrs.field(factory=dict)
    last_attempt: dict[str, int] = attrs.field(factory=dict)
    #: hooks by correlation id: their names; payloads received so far and the last one's time
    hook_names: dict[str | None, str] = attrs.field(factory=dict)
    received: dict[str | None, tuple[int, datetime]] = attrs.field(factory=dict)

    def lane(self, cid: str | None, fallback: str) -> int:
        key = cid if cid is not None else fallback
        return self.lanes.setdefault(key, len(self.lanes))

    def close(
        self, key: tuple[Any, ...], end: datetime, outcome: str, detail: str | None = None
    ) -> _Open | None:
        bar = self.open.pop(key, None)
        if bar is not None:
            self.add(bar, end, outcome, detail)
        return bar

    def add(self, bar: _Open, end: datetime, outcome: str, detail: str | None = None) -> None:
        self.bars.append(
            Bar(
                kind=bar.kind,
                name=bar.name,
                correlation_id=bar.cid,
                start=bar.start,
                end=max(end, bar.start),
                outcome=outcome,
                lane=self.lane(bar.cid, f"{bar.kind}:{bar.name}"),
                attempt=bar.attempt,
                detail=detail if detail is not None else bar.detail,
                child_run_id=bar.child_run_id,
            )
        )


def _step_event(builder: _Builder, event: Event) -> None:
    cid = event.correlation_id or ""
    payload = event.payload
    name = _text(payload.get("name")) or "step"
    last = builder.last_attempt.get(cid, 0)
    starts = event.type in (EventType.STEP_SCHEDULED, EventType.STEP_STARTED)
    attempt = _int(payload.get("attempt")) or (last + 1 if starts or not last else last)
    builder.lane(cid, name)
    key = ("step", cid, attempt)
    if event.type == EventType.STEP_SCHEDULED:  # dispatched: it waits for a worker
        builder.last_attempt[cid] = attempt
        builder.close(("retry-wait", cid), event.timestamp, "completed")
        builder.open[key] = _Open(
            "step", name, cid, event.timestamp, attempt, "waiting for a worker"
        )
        return
    if event.type == EventType.STEP_STARTED:  # the attempt's bar starts when it starts
        builder.close(("retry-wait", cid), event.timestamp, "completed")
        builder.open[key] = _Open("step", name, cid, event.timestamp, attempt)
        builder.last_attempt[cid] = attempt
        return
    opened = builder.open.get(key)
    if opened is None:  # an outcome with no recorded start or scheduling
        builder.open[key] = _Open("step", name, cid, event.timestamp, attempt)
    else:
        opened.detail = None
    builder.last_attempt[cid] = attempt
    message = _text(payload.get("error_message"))
    if event.type == EventType.STEP_COMPLETED:
        builder.close(key, event.timestamp, "completed")
    elif event.type == EventType.STEP_FAILED:
        builder.close(key, event.timestamp, "failed", message)
    else:  # retrying: the attempt failed, a wait until the next one starts
        builder.close(key, event.timestamp, "retrying", message)
        due = _time(payload.get("due_at"))
        detail = f"retry due at {due.isoformat()}" if due is not None else None
        builder.open[("retry-wait", cid)] = _Open(
            "retry-wait", name, cid, event.timestamp, attempt, detail
        )


def _other_event(builder: _Builder, event: Event) -> None:
    cid = event.correlation_id
    payload = event.payload
    kind = event.type
    if kind == EventType.WAIT_CREATED:
        name = _text(payload.get("name")) or "sleep"
        due = _time(payload.get("due_at"))
        detail = f"until {due.isoformat()}" if due is not None else None
        builder.lane(cid, name)
        builder.open[("sleep", cid)] = _Open("sleep", name, cid, event.timestamp, detail=detail)
    elif kind == EventType.WAIT_COMPLETED:
        builder.close(("sleep", cid), event.timestamp, "completed")
    elif kind == EventType.HOOK_CREATED:
        name = _text(payload.get("name")) or "hook"
        builder.lane(cid, name)
        builder.hook_names[cid] = name
        builder.open[("hook", cid)] = _Open("hook", name, cid, event.timestamp)
    elif kind == EventType.HOOK_RECEIVED:
        # the wait for a payload ends with it; a later payload (a hook iterated with
        # ``async for``) gets a bar of its own, from the payload before it
        received = builder.received.get(cid)
        if received is not None:
            count, since = received
            name = builder.hook_names.get(cid, "hook")
            bar = _Open("hook", name, cid, since, detail=f"payload {count + 1} received")
            builder.add(bar, event.timestamp, "completed")
        elif builder.close(("hook", cid), event.timestamp, "completed", "payload received"):
            count = 0
        else:
            return
        builder.received[cid] = (count + 1, event.timestamp)
    elif kind == EventType.HOOK_DISPOSED:
        timed_out = payload.get("reason") == "timeout"  # create_hook(timeout=...) ran out
        why = "timed out without a payload" if timed_out else "disposed without a payload"
        builder.close(("hook", cid), event.timestamp, "cancelled", why)
    elif kind == EventType.CHILD_WORKFLOW_STARTED:
        name = _text(payload.get("name")) or "child"
        child = _text(payload.get("child_run_id"))
        builder.lane(cid, name)
        builder.open[("child", cid)] = _Open(
            "child", name, cid, event.timestamp, detail=child and f"run {child}", child_run_id=child
        )
    elif kind == EventType.CHILD_WORKFLOW_COMPLETED:
        builder.close(("child", cid), event.timestamp, "completed")
    elif kind == EventType.CHILD_WORKFLOW_FAILED:
        status = _text(payload.get("status")) or "failed"
        message = _text(payload.get("error_message"))
        outcome = "cancelled" if status == "cancelled" else "failed"
        builder.close(("child", cid), event.timestamp, outcome, message or status)


_STEP_EVENTS = frozenset(
    {
        EventType.STEP_SCHEDULED,
        EventType.STEP_STARTED,
        EventType.STEP_COMPLETED,
        EventType.STEP_FAILED,
        EventType.STEP_RETRYING,
    }
)


def build_timeline(events: Sequence[Event], now: datetime) -> Timeline:
    """The bars of the run whose log is ``events``, on an axis from its first event.

    A bar still going on when the log ends runs to ``now`` (outcome
    ``running``) while the run is live; once the log shows the run's end, it
    ends there instead (outcome ``cancelled``, since the run stopped it). A
    retried run (``workflow_retried``) is live again.
    """
    builder = _Builder()
    ended: datetime | None = None
    for event in events:
        if event.type in _ENDS:
            ended = event.timestamp
        elif event.type == EventType.WORKFLOW_RETRIED:
            ended = None
        elif event.type in _STEP_EVENTS:
            _step_event(builder, event)
        else:
            _other_event(builder, event)
    for key, bar in list(builder.open.items()):
        if ended is not None:
            builder.close(key, ended, "cancelled")
        else:
            builder.close(key, max(now, bar.start), "running")
    live = ended is None and any(b.outcome == "running" for b in builder.bars)
    return _place(events, builder, now, ended, live)


def _place(
    events: Sequence[Event], builder: _Builder, now: datetime, ended: datetime | None, live: bool
) -> Timeline:
    """The bars with their positions in percent of the axis, sorted by lane then start."""
    if events:
        start = events[0].timestamp
        end = ended if ended is not None else max(now, events[-1].timestamp)
    else:
        start = end = now
    end = max([end, *(b.end for b in builder.bars)])
    span = (end - start).total_seconds()

    def percent(moment: datetime) -> float:
        if span <= 0:
            return 0.0
        return round(min(max((moment - start).total_seconds() / span, 0.0), 1.0) * 100, 3)

    bars = tuple(
        sorted(
            (
                attrs.evolve(
                    bar,
                    left=percent(bar.start),
                    width=round(max(percent(bar.end) - percent(bar.start), 0.0), 3),
                )
                for bar in builder.bars
            ),
            key=lambda b: (b.lane, b.start, b.kind != "step"),
        )
    )
    return Timeline(
        start=start,
        end=end,
        bars=bars,
        ticks=_ticks(span),
        lanes=len(builder.lanes),
        live=live,
    )


def _ticks(span: float) -> tuple[Tick, ...]:
    """Marks at round times (1-2-5 steps), at most about eight, from 0 to the span."""
    if span <= 0:
        return (Tick(0.0, "0 ms"),)
    fits = [s for s in _TICK_STEPS if span / s <= 8]
    step = fits[0] if fits else 86400.0 * math.ceil(span / 8 / 86400)
    ticks: list[Tick] = []
    count = int(span // step)
    for index in range(count + 1):
        at = index * step
        ticks.append(Tick(round(at / span * 100, 3), format_duration(timedelta(seconds=at))))
    return tuple(ticks)

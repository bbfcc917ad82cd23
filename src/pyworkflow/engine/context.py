"""The workflow-facing API of an activation: steps, sleeps, hooks and recorded values."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pyworkflow.engine.state import (
    _STEP_CALLS,
    ActivationState,
    _describe,
    _Discarded,
    _Diverged,
    _HookState,
    _Op,
)
from pyworkflow.hooks import check_hook_secret, check_hook_token
from pyworkflow.models import Event, EventType, NewEvent, utcnow
from pyworkflow.serialization import dumps_call_limited, dumps_limited
from pyworkflow.step import StepDefinition, check_dispatchable
from pyworkflow.validation import schema_ref

if TYPE_CHECKING:
    from pyworkflow.errors import HookTimeoutError

_Future = asyncio.Future


class WorkflowCalls(ActivationState):
    """What workflow code calls through ``pyworkflow.context`` (the ``WorkflowContext`` protocol).

    Each call takes the next correlation id, checks it against the log
    (divergence is a :class:`NonDeterminismError`), and either returns the
    recorded outcome or buffers the event that records the new operation.
    """

    if TYPE_CHECKING:  # engine/hook_timeouts.py (a mixin of the same activation)

        def _hook_timer(self, state: _HookState, timeout: timedelta) -> None: ...
        def _cancel_hook_timer(self, hook_cid: str) -> None: ...
        def _hook_timed_out(self, hook_cid: str) -> bool: ...
        def _hook_timeout_error(self, hook_cid: str) -> HookTimeoutError: ...

    @property
    def is_replaying(self) -> bool:
        return self.replaying

    def _next(
        self, kind: str, name: str, decisions: frozenset[EventType]
    ) -> tuple[str, list[Event]]:
        if self.discarded:
            raise _Discarded
        self.counter += 1
        cid = str(self.counter)
        recorded = self.by_cid.get(cid, [])
        if recorded:
            first = recorded[0]
            same = first.type in decisions and (
                first.payload.get("name") == name or first.payload.get("kind") == name
            )
            if not same:
                self.divergence = self.divergence or (cid, _describe(first), f"{kind} {name!r}")
                self._diverge(
                    f"operation {cid}: the log has {_describe(first)} (event seq {first.seq}) "
                    f"but the workflow now calls {kind} {name!r}"
                )
        return cid, recorded

    def _diverge(self, message: str) -> None:
        if self.diverged is None:
            self.diverged = message
        raise _Diverged(message)

    def call_step(
        self,
        definition: StepDefinition,
        body: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> asyncio.Future[Any]:
        if self.runtime.step_overrides:  # the test harness replaced some step bodies
            body = self.runtime.step_overrides.get(definition.name, body)
        cid = str(self.counter + 1)
        if not self.discarded and cid not in self.by_cid:
            # a new operation (live): what follows, with nothing recorded to check against
            self.counter += 1
            future: asyncio.Future[Any] = _Future(loop=self.loop)
            op = _Op(cid, "step", future, definition, body, args, kwargs)
            self._open_step(op, definition, body)
            self.ops[cid] = op
            return future
        cid, recorded = self._next("step", definition.name, _STEP_CALLS)
        op = _Op(cid, "step", _Future(loop=self.loop), definition, body, args, kwargs)
        resolved = False
        for event in recorded:
            if event.type in _STEP_CALLS:
                attempt = int(event.payload.get("attempt", 1))
                if attempt >= op.attempt:
                    op.attempt = attempt
                    op.due = None
                    op.started = event.type == EventType.STEP_STARTED
                    op.remote = not op.started or bool(event.payload.get("dispatched"))
            elif event.type == EventType.STEP_RETRYING:
                if int(event.payload.get("attempt", 0)) >= op.attempt:
                    op.due = datetime.fromisoformat(event.payload["due_at"])
                    op.remote = False
            elif event.type in (EventType.STEP_COMPLETED, EventType.STEP_FAILED):
                resolved = True
        if not resolved:
            self._open_step(op, definition, body)
        self.ops[cid] = op
        return op.future

    def _open_step(self, op: _Op, definition: StepDefinition, body: Callable[..., Any]) -> None:
        """A step still to run: check it can be dispatched, encode its input, mark it open."""
        if self.dispatching:
            check_dispatchable(definition, body)
        op.input = dumps_call_limited(
            self.serializer,
            op.args,
            op.kwargs,
            limit=self.limit,
            what=f"input of step {definition.name!r}",
        )
        self.open[op.cid] = op

    def call_sleep(self, delta: timedelta | None, until: datetime | None) -> asyncio.Future[Any]:
        cid, recorded = self._next("sleep", "sleep", frozenset({EventType.WAIT_CREATED}))
        op = _Op(cid, "sleep", self.loop.create_future())
        if recorded:
            op.due = datetime.fromisoformat(recorded[0].payload["due_at"])
        else:
            op.due = until if until is not None else utcnow() + (delta or timedelta())
            self.buffer.append(
                NewEvent(
                    EventType.WAIT_CREATED,
                    cid,
                    {"name": "sleep", "due_at": op.due.isoformat()},
                )
            )
        if not any(e.type == EventType.WAIT_COMPLETED for e in recorded):
            self.open[cid] = op
        self.ops[cid] = op
        return op.future

    def record_value(self, kind: str, produce: Callable[[], Any]) -> Any:
        cid, recorded = self._next("value", kind, frozenset({EventType.VALUE_RECORDED}))
        if recorded:
            return self._load(recorded[0], "value")
        value = produce()
        data = self.serializer.dumps(value)
        self.buffer.append(NewEvent(EventType.VALUE_RECORDED, cid, {"kind": kind, "value": data}))
        return value

    def write_chunk(self, name: str, value: Any) -> None:
        """Buffer a chunk workflow code wrote to stream ``name``; stored before the next flush.

        The n-th write to ``name`` in the run (workflow code's order is
        deterministic) has index n, so a replay writes the same indexes and
        storage keeps each once. A write that the code follows with an operation
        the log already records was stored before that record (a flush stores
        its chunks before its events), so a replay does not write it again.
        """
        if self.discarded:
            raise _Discarded
        index = self.stream_writes.get(name, 0)
        self.stream_writes[name] = index + 1
        if str(self.counter + 1) in self.by_cid:
            return
        what = f"chunk {index} of stream {name!r} (workflow code, run {self.run_id})"
        data = dumps_limited(self.serializer, value, limit=self.limit, what=what)
        self.chunks.append((name, data, index))

    @property
    def public_url(self) -> str | None:
        return self.runtime.settings.public_url

    def create_hook(
        self, token: str | None, schema: Any, secret: str | None, timeout: timedelta | None = None
    ) -> tuple[str, str]:
        cid, recorded = self._next("hook", "hook", frozenset({EventType.HOOK_CREATED}))
        if recorded:
            state = _HookState(cid, str(recorded[0].payload["token"]), durable=True)
        else:
            actual = secrets.token_urlsafe(24) if token is None else check_hook_token(token)
            if secret is not None:
                check_hook_secret(secret)
            path = schema_ref(schema) if schema is not None else None
            payload = {"name": "hook", "token": actual, "schema": path, "signed": bool(secret)}
            event = NewEvent(EventType.HOOK_CREATED, cid, payload, hook_secret=secret or None)
            self.buffer.append(event)
            state = _HookState(cid, actual, created=event)
        self.hooks[cid] = state
        if timeout is not None:  # engine/hook_timeouts.py: its timer is the next operation
            self._hook_timer(state, timeout)
        return cid, state.token

    def hook_receive(self, cid: str) -> asyncio.Future[Any]:
        if self.discarded:
            raise _Discarded
        state = self.hooks[cid]
        future: asyncio.Future[Any] = self.loop.create_future()
        if state.buffer:
            future.set_result(state.buffer.popleft())
        elif self._hook_timed_out(cid):
            future.set_exception(self._hook_timeout_error(cid))
        else:
            state.waiters.append(future)
        return future

    def hook_disposed(self, cid: str) -> bool:
        state = self.hooks[cid]
        # a timed-out hook still hands out the payloads recorded before its deadline
        return state.disposed and not (state.buffer and self._hook_timed_out(cid))

    def hook_dispose(self, cid: str) -> None:
        if self.discarded:
            raise _Discarded
        state = self.hooks[cid]
        if state.disposed:
            return
        state.disposed = True
        self._cancel_hook_timer(cid)
        recorded = self.by_cid.get(cid, [])
        if not any(e.type == EventType.HOOK_DISPOSED for e in recorded):
            self.buffer.append(
                NewEvent(EventType.HOOK_DISPOSED, cid, {"name": "hook", "token": state.token})
            )

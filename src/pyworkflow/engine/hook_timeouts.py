"""The activation's part in hook timeouts: ``create_hook(timeout=...)`` (issue 20).

A hook created with a timeout gets a durable timer, the same one as
``sleep()`` and ``first(hook, sleep(...))``: the operation after the hook's
own (its next correlation id) records ``wait_created`` (``name``
``"hook_timeout"``, ``due_at`` = creation time plus the timeout, the hook's
``token`` and ``hook`` id) in the same append as ``hook_created``, and the
run's wake time covers it like any sleep. The due time is read back from the
log on replay, so every activation agrees on it.

The timeout is the hook's **lifetime**: until ``due_at`` the hook receives
payloads as usual (``await hook``, ``async for``); when the timer fires the
activation appends ``wait_completed`` and ``hook_disposed`` (``"reason":
"timeout"``) together. From then on the token is free (posting to it is a
``HookNotFoundError``, HTTP 404, as for any disposed hook), payloads recorded
before the expiry are still handed out, and then ``await hook`` raises
:class:`~pyworkflow.errors.HookTimeoutError` while ``async for`` ends. Which
of a payload and the expiry came first is decided by their order in the log,
as for ``first(hook, sleep(...))``: deterministic on replay. Disposing the
hook earlier (``async with`` exit, ``hook.dispose()``) cancels its timer.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pyworkflow.engine.deadline import _show
from pyworkflow.engine.state import ActivationState, _HookState, _Op
from pyworkflow.errors import HookTimeoutError
from pyworkflow.models import Event, EventType, NewEvent, utcnow

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Sequence

    from pyworkflow.models import Run
    from pyworkflow.runtime import Runtime

__all__ = ["HOOK_TIMEOUT", "TIMERS", "HookTimeouts"]

#: The ``name`` of a hook timer's ``wait_created`` / ``wait_completed`` and its operations' kind.
HOOK_TIMEOUT = "hook_timeout"
#: Kinds of operations that are durable timers: they fire when due (``wait_completed``).
TIMERS = frozenset({"sleep", HOOK_TIMEOUT})
_WAIT_CREATED = frozenset({EventType.WAIT_CREATED})


class HookTimeouts(ActivationState):
    """Mixin of :class:`~pyworkflow.engine.activation.Activation`: hook timers."""

    def __init__(self, runtime: Runtime, run: Run, history: Sequence[Event], owner: str) -> None:
        super().__init__(runtime, run, history, owner)
        #: each timed hook's timer operation, by the hook's id
        self.hook_timers: dict[str, _Op] = {}
        #: hooks whose timeout ran out (the hook, the timeout in seconds, the deadline)
        self.hooks_expired: dict[str, tuple[_HookState, float, datetime]] = {}

    if TYPE_CHECKING:  # engine/context.py (a mixin of the same activation)

        def _next(
            self, kind: str, name: str, decisions: frozenset[EventType]
        ) -> tuple[str, list[Event]]: ...

    def _hook_timer(self, state: _HookState, timeout: timedelta) -> None:
        """Give the hook ``state`` (just created) its timer: the next operation."""
        cid, recorded = self._next("sleep", HOOK_TIMEOUT, _WAIT_CREATED)
        op = _Op(cid, HOOK_TIMEOUT, self.loop.create_future())
        if recorded:
            payload = recorded[0].payload
            op.due = datetime.fromisoformat(payload["due_at"])
            seconds = float(payload.get("timeout", timeout.total_seconds()))
        else:
            op.due = utcnow() + timeout
            seconds = timeout.total_seconds()
            self.buffer.append(
                NewEvent(
                    EventType.WAIT_CREATED,
                    cid,
                    {
                        "name": HOOK_TIMEOUT,
                        "due_at": op.due.isoformat(),
                        "hook": state.cid,
                        "token": state.token,
                        "timeout": seconds,
                    },
                )
            )
        if not any(e.type == EventType.WAIT_COMPLETED for e in recorded):
            self.open[cid] = op
        self.ops[cid] = op
        self.hook_timers[state.cid] = op
        due = op.due

        def fired(future: asyncio.Future[Any]) -> None:
            if not future.cancelled():
                self._hook_expired(state, seconds, due)

        op.future.add_done_callback(fired)

    def _cancel_hook_timer(self, hook_cid: str) -> None:
        """The hook was disposed by the workflow: its timer will not fire."""
        op = self.hook_timers.get(hook_cid)
        if op is not None and not op.future.done():
            op.future.cancel()
            self.open.pop(op.cid, None)

    def _hook_timed_out(self, hook_cid: str) -> bool:
        """Whether the hook ``hook_cid``'s timeout ran out."""
        return hook_cid in self.hooks_expired

    def _hook_timeout_error(self, hook_cid: str) -> HookTimeoutError:
        """The error a receive on the expired hook ``hook_cid`` raises."""
        state, seconds, due = self.hooks_expired[hook_cid]
        return HookTimeoutError(
            f"hook {state.token!r} timed out: nothing more arrived within its timeout of "
            f"{_show(timedelta(seconds=seconds))} (deadline {due.isoformat()})",
            token=state.token,
            timeout=seconds,
            deadline=due,
        )

    def _hook_expired(self, state: _HookState, seconds: float, due: datetime) -> None:
        """The hook's timer fired (live, or replayed from the log): dispose it, fail waiters."""
        self.hooks_expired[state.cid] = (state, seconds, due)
        if not state.disposed:
            state.disposed = True
            recorded = self.by_cid.get(state.cid, [])
            if not any(e.type == EventType.HOOK_DISPOSED for e in recorded):
                self.buffer.append(
                    NewEvent(
                        EventType.HOOK_DISPOSED,
                        state.cid,
                        {"name": "hook", "token": state.token, "reason": "timeout"},
                    )
                )
        self.log.bind(hook=state.token).info("hook timed out")
        while state.waiters:
            waiter = state.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(self._hook_timeout_error(state.cid))

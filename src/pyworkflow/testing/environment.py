"""``WorkflowEnvironment``: run workflows in-process on memory storage with a virtual clock.

The environment owns a runtime of its own (its own loop thread, a fresh
``memory://`` storage, the :class:`~pyworkflow.testing.driver.TestDriver`
executor and a :class:`~pyworkflow.testing.clock.VirtualClock`), separate
from the process's runtime: nothing it does reaches real storage, and real
runs never see its time. Every call returns once the environment is quiet
(no activation running, nothing due at the current virtual time), so what a
test looks at next is settled.

Time moves only when the test moves it: :meth:`WorkflowEnvironment.advance`
moves it by hand, and waiting for a result moves it to each next timer
(sleep, retry back-off, a lease to expire) while the run has not ended. A run
that waits for something only the test can give (a hook payload) fails the
wait with :class:`WorkflowBlockedError` naming the hook, instead of hanging.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from pyworkflow import client
from pyworkflow.config import load_settings
from pyworkflow.durations import Duration, parse_duration
from pyworkflow.errors import PyWorkflowError
from pyworkflow.models import Event, EventType, RunPage, RunStatus, Schedule
from pyworkflow.plugins import create_storage
from pyworkflow.runtime import Runtime
from pyworkflow.testing.clock import VirtualClock
from pyworkflow.testing.driver import TestDriver
from pyworkflow.testing.overrides import StepOverride, step_name
from pyworkflow.workflow import definition_of, workflow_timeout

__all__ = ["SyncWorkflowEnvironment", "WorkflowBlockedError", "WorkflowEnvironment"]

#: ``(idempotency_key, run_id, timeout, flow options)`` of a start.
_StartOptions = tuple[str | None, str | None, timedelta | None, "client.FlowOptions | None"]

_CHILD_ENDS = (EventType.CHILD_WORKFLOW_COMPLETED, EventType.CHILD_WORKFLOW_FAILED)


class WorkflowBlockedError(PyWorkflowError, AssertionError):
    """The awaited run can never end on its own: it waits for something only the test can give."""

    def __init__(self, message: str, *, run_id: str, hooks: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.run_id = run_id
        #: Tokens of the live hooks the run waits on.
        self.hooks = hooks


class WorkflowEnvironment:
    """Runs workflows in this process with time that moves only when the test moves it.

    Use it as ``async with WorkflowEnvironment() as env`` (or ``with`` in a
    sync test, with :attr:`sync`), or through the ``workflow_env`` pytest
    fixture. ``start`` sets where the virtual clock begins (default: now);
    ``settings`` are ``configure()`` keys for the environment's runtime
    (``serializer``, ``max_payload_bytes``, ...; storage and executor are the
    environment's own).

    ```python
    import pytest
    from pyworkflow import sleep, workflow
    from pyworkflow.testing import WorkflowEnvironment

    @workflow
    async def reminder(user: str) -> str:
        await sleep("30d")
        return f"reminded {user}"

    @pytest.fixture
    def anyio_backend() -> str:
        return "asyncio"  # PyWorkflow runs on asyncio (else anyio tries trio too)

    @pytest.mark.anyio
    async def test_reminder() -> None:
        async with WorkflowEnvironment() as env:
            assert await env.run(reminder, "ana") == "reminded ana"  # 30 days, at once
    ```
    """

    def __init__(self, *, start: datetime | None = None, **settings: Any) -> None:
        for key in ("storage", "executor"):
            if key in settings:
                raise ValueError(
                    f"WorkflowEnvironment runs on its own memory storage and executor; "
                    f"remove {key!r}"
                )
        self.clock = VirtualClock(start)
        self._settings = settings
        self._driver = TestDriver()
        self._runtime: Runtime | None = None
        self._overrides: dict[str, StepOverride] = {}
        #: The same environment with blocking methods, for sync tests.
        self.sync = SyncWorkflowEnvironment(self)

    # ----- lifecycle -----

    def open(self) -> WorkflowEnvironment:
        """Start the environment's runtime (``with``/``async with`` do this)."""
        if self._runtime is not None:
            return self
        overrides = {**self._settings, "storage": "memory://", "embedded_worker": False}
        settings = load_settings(overrides)
        storage = create_storage("memory://", settings)
        runtime = Runtime(settings, storage=storage, executor=self._driver, clock=self.clock)
        runtime.start()
        self._runtime = runtime
        return self

    def close(self) -> None:
        """Stop the runtime; the environment's runs and events are gone with it."""
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.shutdown()

    def __enter__(self) -> WorkflowEnvironment:
        return self.open()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> WorkflowEnvironment:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self.open)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        import anyio.to_thread

        await anyio.to_thread.run_sync(self.close)

    @property
    def runtime(self) -> Runtime:
        """The environment's runtime (its storage, clock and executor)."""
        if self._runtime is None:
            raise RuntimeError(
                "the WorkflowEnvironment is not open: use `async with WorkflowEnvironment() "
                "as env`, `with WorkflowEnvironment() as env`, or the workflow_env fixture"
            )
        return self._runtime

    # ----- time -----

    def now(self) -> datetime:
        """The environment's current (virtual) time."""
        return self.clock.now()

    async def advance(self, duration: Duration) -> None:
        """Move the clock forward by ``duration`` ("1h", seconds, a timedelta).

        Timers due on the way fire in order, each at its own time, and what
        they start runs before the clock moves on.
        """
        delta = _forward(duration)
        await self.runtime.acall(self._advance, delta)

    # ----- runs -----

    async def start(self, workflow: Any, *args: Any, **kwargs: Any) -> str:
        """Start a run of ``workflow``; returns its id once the environment is quiet."""
        return await self.runtime.acall(self._start, workflow, args, kwargs)

    async def start_workflow(
        self,
        workflow: Any,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        timeout: Duration | None = None,
        idempotency_key: str | None = None,
        run_id: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        partition_key: str | None = None,
        dedup_key: str | None = None,
    ) -> str:
        """Start a run with options, as ``pyworkflow.start_workflow`` (``timeout=``, ``queue=``)."""
        limit = workflow_timeout(timeout)  # a bad value fails here, before anything is written
        flow = client.FlowOptions.checked(queue, priority, partition_key, dedup_key)
        options = (idempotency_key, run_id, limit, flow)
        return await self.runtime.acall(
            self._start, workflow, tuple(args), dict(kwargs or {}), options
        )

    async def run(self, workflow: Any, *args: Any, **kwargs: Any) -> Any:
        """Start a run and return its result (skipping time to each timer on the way).

        A failed run raises its error, a cancelled one ``WorkflowCancelledError``,
        and one that waits for a hook payload only the test can send
        :class:`WorkflowBlockedError`. A transient workflow (``durable=False``)
        runs as a transient run on the environment's clock and step overrides
        (docs/transient.md).
        """
        if not definition_of(workflow).durable:
            return await self.runtime.acall(self._execute, workflow, args, kwargs)
        run_id = await self.start(workflow, *args, **kwargs)
        return await self.result(run_id)

    async def result(self, run_id: str) -> Any:
        """The run's result, moving time to each next timer until the run ends."""
        return await self.runtime.acall(self._result, run_id)

    async def get_run(self, run_id: str) -> client.RunInfo:
        """The run's status, result or error, and timestamps (as ``pyworkflow.get_run``)."""
        return await self.runtime.acall(client._get_run, self.runtime, run_id)

    async def events(self, run_id: str) -> list[Event]:
        """The run's event log, in order."""
        return await self.runtime.acall(self.runtime.storage.get_events, run_id)

    async def list_runs(
        self,
        *,
        status: RunStatus | str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        parent: str | None = None,
    ) -> RunPage:
        """The environment's runs, newest first (as ``pyworkflow.list_runs``).

        For example the runs a schedule started: ``(await env.list_runs(workflow="nightly")).runs``.
        """
        page: RunPage = await self.runtime.acall(
            *self._list_call(status, workflow, limit, cursor, parent)
        )
        return page

    def _list_call(
        self,
        status: RunStatus | str | None,
        workflow: str | None,
        limit: int,
        cursor: str | None,
        parent: str | None,
    ) -> tuple[Any, ...]:
        """The call (function, then arguments) that lists runs, for the runtime's loop."""
        wanted = RunStatus(status) if status is not None else None
        return (client._list_runs, self.runtime, wanted, workflow, limit, cursor, parent)

    async def resume_hook(
        self, token: str, payload: Any = None, *, delivery_id: str | None = None
    ) -> str:
        """Send ``payload`` to hook ``token`` (as ``pyworkflow.resume_hook``); the run's id.

        Returns once the run has taken the payload and the environment is quiet.
        """
        keys = client._delivery_keys(delivery_id)
        return await self.runtime.acall(self._resume_hook, token, payload, keys)

    async def cancel(self, run_id: str, reason: str | None = None) -> bool:
        """Cancel the run (as ``pyworkflow.cancel``); False if it had already ended."""
        return await self.runtime.acall(self._cancel, run_id, reason)

    # ----- schedules -----

    async def create_schedule(
        self, name: str, workflow: Any, cron: str | None = None, **options: Any
    ) -> Schedule:
        """Create a schedule in the environment (as ``pyworkflow.create_schedule``).

        Give a cron expression or ``every=`` (an interval, with ``anchor=``).

        Its ticks follow the virtual clock: :meth:`advance` fires each tick on
        its way. Schedules declared with ``@workflow(schedule=...)`` exist in
        the environment on their own.
        """
        stored: Schedule = await self.runtime.acall(
            *self._schedule_call(name, workflow, cron, options)
        )
        return stored

    def _schedule_call(
        self, name: str, workflow: Any, cron: str | None, options: dict[str, Any]
    ) -> tuple[Any, ...]:
        """The call (function, then arguments) that creates the schedule, for the loop."""
        from pyworkflow.schedules.api import _create, build_schedule

        replace = bool(options.pop("replace", False))
        schedule = build_schedule(self.runtime, name, workflow, cron, **options)
        return (self._create_schedule, _create, schedule, replace)

    async def _create_schedule(
        self, create: Callable[..., Awaitable[Schedule]], schedule: Schedule, replace: bool
    ) -> Schedule:
        stored = await create(self.runtime, schedule, replace)
        await self._settle()
        return stored

    async def schedules(self) -> list[Schedule]:
        """The environment's schedules, by name."""
        return await self.runtime.acall(self.runtime.storage.list_schedules)

    # ----- steps -----

    def override_step(self, step: Any, fake: Callable[..., Any]) -> StepOverride:
        """Run ``fake`` instead of ``step``'s body in this environment's runs.

        ``step`` is a ``@step`` function, a ``Step`` subclass or a step name;
        ``fake`` takes the step's arguments (sync or ``async``). Its calls are
        recorded in the returned override's ``calls``; a step overridden again
        gets the new fake.
        """
        if not callable(fake):
            raise TypeError(f"the fake of a step must be callable, not {type(fake).__name__}")
        name = step_name(step)
        override = StepOverride(name, fake)
        self._overrides[name] = override
        self.runtime.step_overrides[name] = override.body()
        return override

    # ----- on the environment's loop -----

    async def _settle(self) -> None:
        await self._driver.settle()

    async def _execute(self, workflow: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        from pyworkflow.transient import run_transient

        definition = definition_of(workflow)
        overrides = self.runtime.step_overrides
        return await run_transient(definition, args, kwargs, overrides=overrides)

    async def _start(
        self,
        workflow: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: _StartOptions = (None, None, None, None),
    ) -> str:
        idempotency_key, wanted_id, limit, flow = options
        run_id = await client._create(
            self.runtime, workflow, args, kwargs, idempotency_key, wanted_id, limit, flow
        )
        await self._settle()
        return run_id

    async def _result(self, run_id: str) -> Any:
        runtime = self.runtime
        while True:
            await self._settle()
            info = await client._get_run(runtime, run_id)
            if info.continued_to is not None:  # continue_as_new: follow the chain
                run_id = info.continued_to
                continue
            if info.status.is_terminal:
                return client._outcome(info)
            next_time = await self._next_time()
            if next_time is None:
                raise await self._blocked(run_id, info.status)
            await self._move(next_time)

    async def _advance(self, delta: timedelta) -> None:
        target = self.clock.now() + delta
        await self._settle()
        while True:
            next_time = await self._next_time(schedules=True)
            if next_time is None or next_time > target:
                break
            await self._move(next_time)
            await self._settle()
        await self._move(target)
        await self._settle()

    async def _resume_hook(self, token: str, payload: Any, keys: tuple[str, ...]) -> str:
        run_id = await client._resume_hook(self.runtime, token, payload, keys)
        await self._settle()
        return run_id

    async def _cancel(self, run_id: str, reason: str | None) -> bool:
        cancelled = await client._cancel(self.runtime, run_id, reason)
        await self._settle()
        return cancelled

    async def _move(self, when: datetime) -> None:
        if when > self.clock.now():
            self.clock.set(when)
            await self._driver.renew_leases()
        self._driver.poke()

    async def _next_time(self, *, schedules: bool = False) -> datetime | None:
        """The earliest time after now at which some run becomes due (a timer, a lease).

        With ``schedules``, a schedule's next tick counts too (``advance`` fires
        ticks on its way; awaiting a result does not run the clock for them).
        """
        storage = self.runtime.storage
        now = self.clock.now()
        best: datetime | None = None
        if schedules:
            tick = await storage.next_schedule_at()
            if tick is not None and tick > now:
                best = tick
        cursor: str | None = None
        while True:
            page = await storage.list_runs(limit=1000, cursor=cursor)
            for run in page.runs:
                if run.status.is_terminal or run.wake_at is None:
                    continue
                at: datetime | None = run.wake_at
                if run.status is RunStatus.SUSPENDED and at is not None and at > now:
                    at = await self._timer_of(run.run_id, run.last_seq, at)
                if at is None:
                    continue
                if run.lease_owner is not None and run.lease_expires_at is not None:
                    at = max(at, run.lease_expires_at)
                if at > now and (best is None or at < best):
                    best = at
            cursor = page.next_cursor
            if cursor is None:
                return best

    async def _timer_of(self, run_id: str, last_seq: int, wake_at: datetime) -> datetime | None:
        """A suspended run's own timer: not its periodic look at its children.

        A parent with open children wakes every so often to repair a lost
        notice from them (``check_children_at``); nothing in the environment
        loses one, so that wake-up does not move the clock.
        """
        last = await self.runtime.storage.get_events(run_id, after_seq=max(0, last_seq - 1))
        if not last or last[-1].type != EventType.WORKFLOW_SUSPENDED:
            return wake_at
        payload = last[-1].payload
        check = payload.get("check_children_at")
        if check is None or wake_at != datetime.fromisoformat(str(check)):
            return wake_at  # the run's own timer, or a wake set since (a back-off after a crash)
        timer = payload.get("timer_at")
        return datetime.fromisoformat(str(timer)) if timer else None

    async def _waits_on(self, run_id: str, depth: int = 0) -> tuple[list[str], list[str]]:
        """The live hook tokens ``run_id`` and its open children wait on, and those children."""
        events = await self.runtime.storage.get_events(run_id)
        live: dict[str, str] = {}
        children: dict[str, str] = {}
        for event in events:
            cid = event.correlation_id or ""
            if event.type == EventType.HOOK_CREATED:
                live[cid] = str(event.payload.get("token"))
            elif event.type == EventType.HOOK_DISPOSED:
                live.pop(cid, None)
            elif event.type == EventType.CHILD_WORKFLOW_STARTED:
                children[cid] = str(event.payload.get("child_run_id"))
            elif event.type in _CHILD_ENDS:
                children.pop(cid, None)
        tokens, named = list(live.values()), []
        for child in children.values():
            info = await client._get_run(self.runtime, child)
            named.append(f"child run {child} ({info.workflow}, {info.status.value})")
            if depth < 10:
                more_tokens, more_children = await self._waits_on(child, depth + 1)
                tokens += more_tokens
                named += more_children
        return tokens, named

    async def _blocked(self, run_id: str, status: RunStatus) -> WorkflowBlockedError:
        found, children = await self._waits_on(run_id)
        tokens = tuple(found)
        if children:
            waits = "; waiting for " + ", ".join(children)
            if tokens:
                named = ", ".join(repr(t) for t in tokens)
                hint = (
                    f", which wait for hook {named}. Send the payload first, e.g. "
                    f"`await env.resume_hook({tokens[0]!r}, payload)`, then await the result"
                )
            else:
                hint = ": nothing in the environment will make them due again"
            message = f"run {run_id} is {status.value} and no timer is pending{waits}{hint}"
        elif tokens:
            named = ", ".join(repr(t) for t in tokens)
            first = tokens[0]
            message = (
                f"run {run_id} is {status.value}, waiting for hook {named}, and no timer is "
                "pending: nothing will resume it. Send the payload first, e.g. "
                f"`await env.resume_hook({first!r}, payload)`, then await the result"
            )
        else:
            message = (
                f"run {run_id} is {status.value} and no timer is pending: nothing in the "
                "environment will make it due again"
            )
        return WorkflowBlockedError(message, run_id=run_id, hooks=tokens)


class SyncWorkflowEnvironment:
    """:class:`WorkflowEnvironment`'s blocking methods, for sync tests (``env.sync``)."""

    def __init__(self, env: WorkflowEnvironment) -> None:
        self._env = env

    def now(self) -> datetime:
        """The environment's current (virtual) time."""
        return self._env.now()

    def advance(self, duration: Duration) -> None:
        """Blocking :meth:`WorkflowEnvironment.advance`."""
        env = self._env
        env.runtime.call(env._advance, _forward(duration))

    def start(self, workflow: Any, *args: Any, **kwargs: Any) -> str:
        """Blocking :meth:`WorkflowEnvironment.start`."""
        env = self._env
        return env.runtime.call(env._start, workflow, args, kwargs)

    def start_workflow(
        self,
        workflow: Any,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        timeout: Duration | None = None,
        idempotency_key: str | None = None,
        run_id: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        partition_key: str | None = None,
        dedup_key: str | None = None,
    ) -> str:
        """Blocking :meth:`WorkflowEnvironment.start_workflow`."""
        env = self._env
        flow = client.FlowOptions.checked(queue, priority, partition_key, dedup_key)
        options = (idempotency_key, run_id, workflow_timeout(timeout), flow)
        return env.runtime.call(env._start, workflow, tuple(args), dict(kwargs or {}), options)

    def run(self, workflow: Any, *args: Any, **kwargs: Any) -> Any:
        """Blocking :meth:`WorkflowEnvironment.run`."""
        env = self._env
        if not definition_of(workflow).durable:
            return env.runtime.call(env._execute, workflow, args, kwargs)
        return self.result(self.start(workflow, *args, **kwargs))

    def result(self, run_id: str) -> Any:
        """Blocking :meth:`WorkflowEnvironment.result`."""
        env = self._env
        return env.runtime.call(env._result, run_id)

    def get_run(self, run_id: str) -> client.RunInfo:
        """Blocking :meth:`WorkflowEnvironment.get_run`."""
        runtime = self._env.runtime
        return runtime.call(client._get_run, runtime, run_id)

    def events(self, run_id: str) -> list[Event]:
        """Blocking :meth:`WorkflowEnvironment.events`."""
        runtime = self._env.runtime
        return runtime.call(runtime.storage.get_events, run_id)

    def resume_hook(
        self, token: str, payload: Any = None, *, delivery_id: str | None = None
    ) -> str:
        """Blocking :meth:`WorkflowEnvironment.resume_hook`."""
        env = self._env
        keys = client._delivery_keys(delivery_id)
        return env.runtime.call(env._resume_hook, token, payload, keys)

    def cancel(self, run_id: str, reason: str | None = None) -> bool:
        """Blocking :meth:`WorkflowEnvironment.cancel`."""
        env = self._env
        return env.runtime.call(env._cancel, run_id, reason)

    def list_runs(
        self,
        *,
        status: RunStatus | str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        parent: str | None = None,
    ) -> RunPage:
        """Blocking :meth:`WorkflowEnvironment.list_runs`."""
        env = self._env
        page: RunPage = env.runtime.call(*env._list_call(status, workflow, limit, cursor, parent))
        return page

    def create_schedule(
        self, name: str, workflow: Any, cron: str | None = None, **options: Any
    ) -> Schedule:
        """Blocking :meth:`WorkflowEnvironment.create_schedule`."""
        env = self._env
        stored: Schedule = env.runtime.call(*env._schedule_call(name, workflow, cron, options))
        return stored

    def schedules(self) -> list[Schedule]:
        """Blocking :meth:`WorkflowEnvironment.schedules`."""
        runtime = self._env.runtime
        return runtime.call(runtime.storage.list_schedules)

    def override_step(self, step: Any, fake: Callable[..., Any]) -> StepOverride:
        """:meth:`WorkflowEnvironment.override_step` (the same, it does not block)."""
        return self._env.override_step(step, fake)


def _forward(duration: Duration) -> timedelta:
    delta = parse_duration(duration, what="advance duration")
    if delta < timedelta(0):
        raise ValueError(f"advance duration must not be negative (got {duration!r})")
    return delta

"""The process's PyWorkflow runtime: settings, storage, executor, and their event loop."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc
import anyio.to_thread
from anyio.from_thread import BlockingPortal
from loguru import logger

from pyworkflow import plugins
from pyworkflow.clock import SYSTEM_CLOCK, Clock
from pyworkflow.clock import install as install_clock
from pyworkflow.config import Settings, load_settings
from pyworkflow.errors import ConfigError, CorruptDataError
from pyworkflow.metrics import install_if_enabled as install_metrics_if_enabled
from pyworkflow.models import Run
from pyworkflow.redaction import redact_url
from pyworkflow.serialization import Serializer
from pyworkflow.stepexec import refresh_body_contexts
from pyworkflow.storage.base import open_storage
from pyworkflow.tracing import flush_tracing
from pyworkflow.tracing import install_if_enabled as install_tracing_if_enabled

if TYPE_CHECKING:
    from pyworkflow.engine.journal import Journal
    from pyworkflow.executors.base import Executor
    from pyworkflow.queues import QueueConfig
    from pyworkflow.storage.base import Storage

__all__ = [
    "Runtime",
    "configure",
    "current_runtime",
    "current_settings",
    "get_runtime",
    "shutdown",
]

T = TypeVar("T")


class Runtime:
    """Owns one event loop on a daemon thread where storage and the executor live.

    Sync API calls hop onto that loop through a blocking portal; async API
    calls from another loop hop through a worker thread. Storage objects are
    therefore only ever used from one loop.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        storage: Storage | None = None,
        executor: Executor | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.settings = settings
        install_metrics_if_enabled(settings)  # the metrics observer (docs/observability.md)
        #: The configured serializer: it writes the payloads of runs started from now on.
        self.serializer = plugins.get_serializer(settings.serializer)
        self.storage = storage or plugins.create_storage(settings.storage, settings)
        self.executor = executor or plugins.create_executor(settings.executor, settings)
        install_tracing_if_enabled(settings, self.storage)  # docs/observability.md
        refresh_body_contexts()  # whether a plugin wraps step bodies, asked once
        #: The clock everything on this runtime's loop reads time through (:mod:`pyworkflow.clock`).
        self.clock = clock
        #: Step bodies replaced by name (the test harness's ``override_step``); empty otherwise.
        self.step_overrides: dict[str, Callable[..., Any]] = {}
        self._portal: BlockingPortal | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: anyio.Event | None = None
        self.task_group: anyio.abc.TaskGroup
        self._started = threading.Event()
        self._error: BaseException | None = None
        #: Calls from other threads waiting for their outcome (see :meth:`_call_from_thread`).
        self._calls: set[concurrent.futures.Future[Any]] = set()
        #: Set once the loop takes no more calls; waiting calls are failed then.
        self._closed = False
        #: The loop's context, in which calls from other threads start their task.
        self._context: contextvars.Context | None = None
        #: The tasks of calls from other threads, while they run (see :meth:`_start_call`).
        self._call_tasks: set[asyncio.Task[None]] = set()

    # ----- lifecycle -----

    def start(self) -> None:
        """Start the loop thread, open storage and start the executor."""
        self._thread = threading.Thread(target=self._thread_main, name="pyworkflow", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            error = self._error
            # the task group wraps a failed start (a refused storage, say) in groups of one
            while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
                error = error.exceptions[0]
            raise error

    def _thread_main(self) -> None:
        try:
            anyio.run(self._main)
        except BaseException as exc:  # reported to the thread that called start()
            self._error = exc
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = anyio.Event()
        install_clock(self.clock)  # before any task starts: they all inherit it
        _current.set(self)  # likewise: current_runtime() on this loop and its step threads
        try:
            async with BlockingPortal() as portal, anyio.create_task_group() as tg:
                self.task_group = tg
                self._context = contextvars.copy_context()  # anyio knows its loop in it
                # background tasks of the storage (a LISTEN loop) run in this task group
                await open_storage(self.storage, tg)
                try:
                    await self.executor.start(self)
                    self._portal = portal
                    self._started.set()
                    await self._stop.wait()
                    await self.executor.stop()
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.storage.close()
                tg.cancel_scope.cancel()
                await portal.stop(cancel_remaining=True)
        finally:
            self._closed = True
            await self._end_call_tasks()
            self._close_calls()

    def shutdown(self) -> None:
        """Stop the executor (draining in-flight work), close storage, end the thread."""
        portal, thread, stop = self._portal, self._thread, self._stop
        if portal is None or thread is None or stop is None:
            return
        self._portal = None
        try:
            portal.call(stop.set)
        except RuntimeError:  # the loop already ended
            pass
        thread.join(timeout=self.settings.drain_timeout + 10)
        flush_tracing()  # the spans still batched leave before the process may end

    # ----- serializers -----

    def serializer_for(self, run: Run) -> Serializer:
        """The serializer that reads and writes ``run``'s payloads: the one it started with.

        A run records its serializer's name when it is created and keeps it for
        life, whatever the ``serializer`` setting says later. A name no plugin
        registers in this process raises :class:`CorruptDataError` naming the
        serializer (activations fail the run with it, once).
        """
        if run.serializer == self.serializer.name:
            return self.serializer
        try:
            return plugins.get_serializer(run.serializer)
        except ConfigError as exc:
            raise CorruptDataError(
                f"run {run.run_id} was written with serializer {run.serializer!r}, which no "
                f"installed plugin provides (available: {', '.join(plugins.serializer_names())}); "
                f"install the plugin that registers serializer {run.serializer!r} (its "
                "pyworkflow_register_serializers hook) on every worker and client, then "
                f"retry the run: pyworkflow runs retry {run.run_id}"
            ) from exc

    # ----- calling into the runtime loop -----

    @property
    def in_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` on the runtime loop from synchronous code."""
        return self.submit(fn, *args).result()

    async def acall(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` on the runtime loop from any async code."""
        if self.in_loop:
            return await fn(*args)
        if self._portal is None:
            raise RuntimeError("the PyWorkflow runtime is not running")
        return await anyio.to_thread.run_sync(self._call_from_thread, fn, args)

    def submit(self, fn: Callable[..., Awaitable[T]], *args: Any) -> concurrent.futures.Future[T]:
        """Start ``fn(*args)`` on the runtime loop from synchronous code; its future at once.

        The checks and errors of :meth:`call`. Cancelling the future before
        the loop starts the call drops the call; a call already running goes
        on, and its outcome is dropped.
        """
        self.check_sync_call()
        return self._submit(fn, args)

    def check_sync_call(self) -> None:
        """Raise ``RuntimeError`` unless a synchronous API call may enter the runtime from here.

        It may from a thread that runs no event loop, while the runtime runs.
        """
        if self._portal is None:
            raise RuntimeError("the PyWorkflow runtime is not running")
        if self.in_loop:
            raise RuntimeError("use the async API (a-prefixed functions) inside async code")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        raise RuntimeError(
            "a synchronous PyWorkflow function was called from async code; "
            "await the async form instead (e.g. `await astart(...)`)"
        )

    def _call_from_thread(self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
        """``fn(*args)`` as a task on the runtime's loop; its outcome, once it has one.

        One round trip between this thread and the loop (a blocking portal's
        ``call`` makes two: one to start the task, one for its outcome). A
        call the runtime cannot take, or that its shutdown cancels, raises
        ``RuntimeError``.
        """
        return self._submit(fn, args).result()

    def _submit(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]
    ) -> concurrent.futures.Future[T]:
        loop, context = self._loop, self._context
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        if self._closed or loop is None or context is None:
            raise RuntimeError("the PyWorkflow runtime is not running")
        self._calls.add(future)
        future.add_done_callback(self._calls.discard)
        try:
            loop.call_soon_threadsafe(self._start_call, fn, args, future, context=context)
        except RuntimeError:  # the loop is closed
            self._calls.discard(future)
            raise RuntimeError("the PyWorkflow runtime is not running") from None
        return future

    def _start_call(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        future: concurrent.futures.Future[T],
    ) -> None:
        """Start the call's task on the loop (in the loop's context, which this runs in).

        A plain asyncio task, not a child of the runtime's task group: spawning
        one through anyio costs several times more, twice per ``start()`` +
        ``get_result()``. The runtime tracks these tasks itself and, when its
        loop ends, cancels and awaits those still running
        (:meth:`_end_call_tasks`), as the task group did.
        """
        if future.done():  # failed by the shutdown already
            return
        loop = self._loop
        if self._closed or loop is None:
            if future.set_running_or_notify_cancel():
                future.set_exception(RuntimeError("the PyWorkflow runtime is not running"))
            return
        task = loop.create_task(self._run_call(fn, args, future))
        self._call_tasks.add(task)
        task.add_done_callback(self._call_ended)

    def _call_ended(self, task: asyncio.Task[None]) -> None:
        self._call_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # a BaseException other than cancellation (KeyboardInterrupt, SystemExit)
            logger.opt(exception=task.exception()).error("a runtime call ended abnormally")

    async def _end_call_tasks(self) -> None:
        """Cancel the calls still running as the loop ends, and wait for them."""
        tasks = list(self._call_tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            with anyio.CancelScope(shield=True):
                await asyncio.wait(tasks)

    @staticmethod
    async def _run_call(
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        future: concurrent.futures.Future[T],
    ) -> None:
        try:
            result = await fn(*args)
        except anyio.get_cancelled_exc_class():
            if not future.done() and future.set_running_or_notify_cancel():
                future.set_exception(RuntimeError("the PyWorkflow runtime stopped during the call"))
            raise
        except BaseException as exc:
            if not future.done() and future.set_running_or_notify_cancel():
                future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if not future.done() and future.set_running_or_notify_cancel():
                future.set_result(result)

    def _close_calls(self) -> None:
        """Take no more calls; fail those still waiting (their task never ran)."""
        self._closed = True
        for future in list(self._calls):
            if not future.done() and future.set_running_or_notify_cancel():
                future.set_exception(RuntimeError("the PyWorkflow runtime is not running"))

    # ----- the write path -----

    @functools.cached_property
    def queue_configs(self) -> dict[str, QueueConfig]:
        """The queues configured in this runtime's settings, by name (docs/queues.md)."""
        from pyworkflow.queues import queue_configs

        return queue_configs(self.settings)

    @functools.cached_property
    def journal(self) -> Journal:
        """The one write path to run logs and its follow-ups (:mod:`pyworkflow.engine.journal`).

        Made on first use, after storage and executor are in place.
        """
        from pyworkflow.engine.journal import Journal  # the engine package imports this module

        return Journal(self.storage, self.executor)


_lock = threading.RLock()
_runtime: Runtime | None = None
#: The runtime whose loop the calling code runs on (set in its loop's context, so its
#: tasks and the threads of its sync step bodies see it); None elsewhere.
_current: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar(
    "pyworkflow_runtime", default=None
)


def current_runtime() -> Runtime:
    """The runtime running the calling code (a step body's), else :func:`get_runtime`.

    A runtime with storage of its own, such as the test harness's
    (:class:`~pyworkflow.testing.WorkflowEnvironment`), is the one its step
    bodies see here, not the process's global runtime.
    """
    return _current.get() or get_runtime()

_overrides: dict[str, Any] = {}


def configure(**settings: Any) -> Settings:
    """Set configuration for this process (wins over pyproject.toml and env vars).

    Restarts the runtime if one is running. Keys are those of
    ``[tool.pyworkflow]``: ``storage``, ``executor``, ``serializer``,
    ``modules``, ``max_payload_bytes``, ...; unknown keys are an error.
    Returns the resulting :class:`~pyworkflow.config.Settings`.

    ```python
    import pyworkflow

    pyworkflow.configure(
        storage="sqlite:////var/lib/app/workflows.db",  # four slashes: an absolute path
        max_payload_bytes=2_000_000,
    )
    ```
    """
    global _runtime
    with _lock:
        merged = {**_overrides, **settings}
        result = load_settings(merged)
        _overrides.clear()
        _overrides.update(merged)
        if _runtime is not None:
            old, _runtime = _runtime, None
            old.shutdown()
        return result


def current_settings() -> Settings:
    """The settings a runtime would use now (without starting one)."""
    with _lock:
        if _runtime is not None:
            return _runtime.settings
        return load_settings(_overrides)


def get_runtime() -> Runtime:
    """The running runtime of this process, started on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            runtime = Runtime(load_settings(_overrides))
            runtime.start()
            _runtime = runtime
            storage = redact_url(runtime.settings.storage)
            logger.bind(storage=storage).debug("pyworkflow runtime started")
        return _runtime


def shutdown() -> None:
    """Stop this process's runtime (in-flight activations get ``drain_timeout``)."""
    global _runtime
    with _lock:
        if _runtime is not None:
            old, _runtime = _runtime, None
            old.shutdown()


def reset() -> None:
    """Shut down and forget ``configure()`` overrides (for tests)."""
    shutdown()
    with _lock:
        _overrides.clear()


atexit.register(shutdown)

"""The ``ray`` executor: activations and dispatched steps as Ray tasks.

A worker (``pyworkflow worker``, or a script's embedded worker) claims due
runs, holds their leases and fires timers; each activation runs as a Ray task
(:func:`pyworkflow_ray.tasks.run_activation`), with its lone steps in the
same Ray worker process, and steps awaited together or declaring resources run
as Ray tasks of their own. docs/ray.md says why and what it measured.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import os
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import anyio
from loguru import logger

from pyworkflow.config import Settings
from pyworkflow.engine import back_off
from pyworkflow.errors import ConfigError
from pyworkflow.executors.local import LocalExecutor
from pyworkflow.redaction import redact_text, redact_url
from pyworkflow_ray.handoff import Handoff, current_handoff
from pyworkflow_ray.settings import RaySettings

if TYPE_CHECKING:
    from pyworkflow.models import Event, Run
    from pyworkflow.runtime import Runtime
    from pyworkflow.step import StepDefinition

__all__ = ["RAY_OPTIONS", "RayExecutor", "connect", "step_options", "worker_env"]

#: Resource names that are options of a Ray task; any other name is a custom resource.
RAY_OPTIONS = frozenset({"num_cpus", "num_gpus", "memory"})
#: What every Ray process this plugin starts gets, unless already set.
_RAY_DEFAULT_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
#: Storage URL schemes Ray workers (other processes, maybe other hosts) cannot share.
_REFUSED = {
    "memory": "memory:// storage lives inside one process",
    "file": "file:// storage is not safe for several processes writing at once",
}

#: Seconds to wait for a TCP connection to the Ray address before giving up.
_CONNECT_TIMEOUT = 5.0

_connect_lock = threading.Lock()


def connect(options: RaySettings) -> None:
    """Connect this process to Ray once (``ray.init``); later calls do nothing.

    Inside a Ray worker process (already connected) nothing happens. An
    address that cannot be reached is a :class:`ConfigError` saying what was tried.
    """
    for key, value in _RAY_DEFAULT_ENV.items():
        os.environ.setdefault(key, value)
    import ray

    with _connect_lock:
        if ray.is_initialized():
            return
        tried = repr(options.address) if options.address else "a new local Ray (address '')"
        try:
            _check_reachable(options.address)
            ray.init(
                address=options.address or None,
                namespace=options.namespace,
                ignore_reinit_error=True,
                include_dashboard=False,
                log_to_driver=False,
            )
        except (ConnectionError, RuntimeError, TimeoutError, ValueError) as exc:
            raise ConfigError(
                f"cannot connect to Ray at {tried} (option 'address' of [tool.pyworkflow.ray] "
                f"or PYWORKFLOW_RAY__ADDRESS): {redact_text(str(exc))}. Start the cluster with "
                '`ray start --head` and use address = "auto" on its machines, '
                '"ray://host:10001" through Ray Client, or "" to start a local Ray'
            ) from exc
        logger.bind(address=options.address or "local", namespace=options.namespace).debug(
            "connected to Ray"
        )


def _check_reachable(address: str) -> None:
    """Fail fast on a ``host:port`` / ``ray://host:port`` nobody listens on.

    Ray itself keeps retrying an unreachable GCS for minutes; ``""`` and
    ``"auto"`` need no check (Ray answers at once when no local cluster runs).
    """
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not address or address == "auto" or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=_CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {host}:{port} ({exc})") from exc


def in_ray_worker() -> bool:
    """Whether this process is a Ray worker (running Ray tasks), not a driver."""
    ray = sys.modules.get("ray")
    if ray is None:
        return False
    try:  # a Ray Client driver has no connected worker of its own: mode None
        from ray._private.worker import global_worker

        return bool(global_worker.mode == ray.WORKER_MODE)
    except (ImportError, AttributeError):
        return False


def step_options(definition: StepDefinition | None) -> dict[str, Any]:
    """Ray task options for a step: ``num_cpus``/``num_gpus``/``memory``, others as ``resources``.

    A step without resources gets Ray's defaults (one CPU).
    """
    options: dict[str, Any] = {}
    custom: dict[str, float] = {}
    for name, amount in ((definition.resources or {}) if definition else {}).items():
        if name == "memory":
            options["memory"] = int(amount)  # bytes
        elif name in RAY_OPTIONS:
            options[name] = float(amount)
        else:
            custom[name] = float(amount)
    if custom:
        options["resources"] = custom
    return options


def _absolute_storage(url: str) -> str:
    """A relative ``sqlite:///`` path made absolute: Ray workers run in other directories."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        path = url[len(prefix) :]
        if path and not path.startswith(":"):
            return prefix + str(Path(path).resolve())
    return url


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(dict(value))
    return str(value)


def worker_env(settings: Settings, options: RaySettings) -> dict[str, str]:
    """``PYWORKFLOW_*`` variables that make a Ray worker's runtime match this process's.

    Storage (absolute; unless ``forward_storage`` is off), modules,
    serializer, lease and poll settings, ``log_level``, the ``queues`` and ``tracing``
    tables, and this executor with no embedded worker: a Ray worker runs the
    activations and steps it is sent, and hands back what it would send
    (:mod:`pyworkflow_ray.handoff`); claims and timers stay with ``pyworkflow worker``.
    """
    env = {
        "PYWORKFLOW_EXECUTOR": "ray",
        "PYWORKFLOW_EMBEDDED_WORKER": "false",
        "PYWORKFLOW_RAY__DISPATCH_TIMEOUT": repr(options.dispatch_timeout),
        "PYWORKFLOW_MODULES": ",".join(settings.modules),
        "PYWORKFLOW_SERIALIZER": settings.serializer,
        "PYWORKFLOW_LEASE_SECONDS": repr(settings.lease_seconds),
        "PYWORKFLOW_POLL_INTERVAL": repr(settings.poll_interval),
        "PYWORKFLOW_MAX_PAYLOAD_BYTES": str(settings.max_payload_bytes),
        "PYWORKFLOW_SQLITE_SYNCHRONOUS": settings.sqlite_synchronous,
    }
    for name, table in settings.plugin_tables.get("queues", {}).items():
        if isinstance(table, Mapping):  # [tool.pyworkflow.queues.<name>]
            for option, value in table.items():
                env[f"PYWORKFLOW_QUEUES__{name.upper()}__{str(option).upper()}"] = _env_text(value)
        else:  # from PYWORKFLOW_QUEUES__<NAME>__<OPTION> already
            env[f"PYWORKFLOW_QUEUES__{str(name).upper()}"] = _env_text(table)
    # tracing: a Ray worker emits the spans of the step attempts it records, in the run's trace
    for option, value in settings.plugin_tables.get("tracing", {}).items():
        env[f"PYWORKFLOW_TRACING__{str(option).upper()}"] = _env_text(value)
    if settings.log_level:
        env["PYWORKFLOW_LOG_LEVEL"] = settings.log_level
    if options.forward_storage:
        env["PYWORKFLOW_STORAGE"] = _absolute_storage(settings.storage)
    env.update(_RAY_DEFAULT_ENV)
    return env


def _runtime_env(settings: Settings, options: RaySettings) -> dict[str, Any]:
    """The user's ``runtime_env`` with PyWorkflow's ``env_vars`` merged in (the user's win)."""
    runtime_env = dict(options.runtime_env)
    user_vars = runtime_env.get("env_vars") or {}
    runtime_env["env_vars"] = {**worker_env(settings, options), **dict(user_vars)}
    return runtime_env


class RayExecutor(LocalExecutor):
    """Activations and dispatched steps as Ray tasks, sent by this process's worker.

    The worker is a script's embedded one or ``pyworkflow worker`` (with
    ``executor = "ray"``): it claims due runs and holds their leases, and runs
    each activation as a Ray task (:meth:`activate`), where the workflow is
    replayed and its lone steps run; it fires timers and submits the steps
    an activation hands back (awaited together, or declaring resources or a
    queue) as Ray tasks of their own, fire-and-forget. In a Ray worker
    process the same executor runs the activation in-process and notes what
    it would send in the activation's :class:`~pyworkflow_ray.handoff.Handoff`.
    """

    name = "ray"
    dispatches_steps = True
    wants_step_definitions = True
    #: a lone step without resources or queue runs in its activation's Ray worker process
    inline_lone_steps = True
    runs_workflows_elsewhere = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        scheme = settings.storage.partition("://")[0].lower()
        if scheme in _REFUSED:
            raise ConfigError(
                f"the 'ray' executor cannot use storage {redact_url(settings.storage)!r}: "
                f"{_REFUSED[scheme]}, and Ray runs workflows and steps in other processes "
                "(maybe on other hosts). Use SQLite (sqlite:///path.db, one host), Redis or "
                "PostgreSQL"
            )
        self.options = RaySettings.from_settings(settings)
        self.dispatch_timeout = self.options.dispatch_timeout
        #: whether this process is a Ray worker (it runs activations sent to it)
        self.inside = in_ray_worker()
        if self.inside:
            from pyworkflow_ray.tasks import worker_name

            self.worker_name = worker_name()  # step_started names the Ray worker
        self._runtime_env = _runtime_env(settings, self.options)
        self._sender = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pw-ray")
        self._pending: set[Any] = set()  # ObjectRefs in flight (their failures are logged)
        self._pending_lock = threading.Lock()
        self._remotes: dict[str, Any] = {}  # a task with options, by task and options
        self._connected = False

    async def worker_starting(self) -> None:
        """Connect to Ray before the worker claims a run: a wrong address fails now."""
        await self._connect()

    async def _connect(self) -> None:
        if not self._connected:
            await asyncio.get_running_loop().run_in_executor(self._sender, connect, self.options)
            self._connected = True

    @property
    def runtime_env(self) -> dict[str, Any]:
        """The ``runtime_env`` of this executor's Ray tasks (the user's, plus ``PYWORKFLOW_*``)."""
        return dict(self._runtime_env)

    def inlines(self, definition: StepDefinition) -> bool:
        """A lone step runs in its activation's process unless it declares ``resources`` or a
        ``queue``.

        Such a step is dispatched: Ray places it by its resources, ``runs show``
        tells while it waits for a worker, and its queue's place is taken by the
        Ray worker that runs it.
        """
        return not definition.resources and definition.queue is None

    def inline_body(
        self, definition: StepDefinition, body: Callable[..., Any]
    ) -> Callable[..., Any]:
        """In a Ray worker, a sync body that a step timeout or cancelled run interrupts.

        A plain ``def`` body runs in a thread of its own, which gets a
        ``KeyboardInterrupt`` when the attempt is cancelled, as ``ray.cancel`` does to a
        task (:mod:`pyworkflow_ray.interrupt`); an ``async def`` body runs as it is.
        """
        if not self.inside or inspect.iscoroutinefunction(body):
            return body
        from pyworkflow_ray.interrupt import interruptible

        return interruptible(body)

    async def activate(
        self, runtime: Runtime, run: Run, owner: str, history: list[Event] | None = None
    ) -> bool:
        """Run the activation as a Ray task (:func:`~pyworkflow_ray.tasks.run_activation`).

        This worker keeps renewing the run's lease meanwhile; cancelled (lease
        lost, shutdown), it cancels the task. A Ray worker that died mid-activation
        (SIGKILL, node lost) leaves the run's lease released, so the run is
        claimed and activated again at once; a task that failed otherwise (the
        workflow modules do not import there, its ``runtime_env`` cannot be set
        up, Ray's memory monitor killed it) backs the run off: it is tried again
        after a pause, not in a loop.
        """
        if self.inside:  # a Ray worker's own runtime: the activation runs here
            return await super().activate(runtime, run, owner, history)
        await self._connect()
        import ray
        from ray.exceptions import NodeDiedError, RayError, WorkerCrashedError

        from pyworkflow_ray.tasks import run_activation

        log = logger.bind(run_id=run.run_id)
        ref = self._remote(run_activation, {}).remote(run.run_id, owner)
        try:
            handoff: Handoff = await asyncio.wrap_future(ref.future())
        except (WorkerCrashedError, NodeDiedError) as exc:
            log.warning(
                "the Ray worker running the activation was lost ({}); activating the run again",
                type(exc).__name__,
            )
            with anyio.CancelScope(shield=True):
                await runtime.storage.release_lease(run.run_id, owner)
            return False
        except RayError as exc:  # the task failed (imports, runtime_env, memory): not at once
            log.error(
                "the activation's Ray task failed ({}): {}",
                type(exc).__name__,
                redact_text(str(exc)),
            )
            with anyio.CancelScope(shield=True):
                await back_off(runtime, run.run_id, owner)
            return False
        except BaseException:
            ray.cancel(ref)
            raise
        await self._take_handoff(handoff)
        return handoff.finished

    async def _take_handoff(self, handoff: Handoff) -> None:
        """Do what a Ray activation left: submit its steps, wake runs, arm timers."""
        by_run: dict[str, list[tuple[str, int, dict[str, Any]]]] = {}
        for run_id, step_id, attempt, options in handoff.steps:
            by_run.setdefault(run_id, []).append((step_id, attempt, options))
        for run_id, jobs in by_run.items():
            await self._submit_steps(run_id, jobs)
        for run_id in handoff.due:
            super().notify(run_id)
        for run_id, at in handoff.timers:
            super().schedule(run_id, at)

    def activating(self, run_id: str) -> bool:
        """False: activations run in Ray workers, whose appends this process does not see
        (waiters here look at storage)."""
        return False

    def notify(self, run_id: str | None = None) -> None:
        """Wake this process's worker; in a Ray worker, hand ``run_id`` back to the sender."""
        if self.inside:
            handoff = current_handoff()
            if handoff is not None and run_id is not None:
                handoff.due.append(run_id)
            return
        super().notify(run_id)

    def schedule(self, run_id: str, at: datetime) -> None:
        """A run suspended until ``at``: the worker wakes then (from a Ray worker, via the
        handoff)."""
        if self.inside:
            handoff = current_handoff()
            if handoff is not None:
                handoff.timers.append((run_id, at))
            return
        super().schedule(run_id, at)

    async def stop(self) -> None:
        await super().stop()
        await asyncio.get_running_loop().run_in_executor(None, self._sender.shutdown)

    async def dispatch_steps(
        self,
        run_id: str,
        steps: Sequence[tuple[str, int]],
        *,
        definitions: Mapping[str, StepDefinition] | None = None,
    ) -> None:
        """One Ray task per step, placed by the step's resources; never waits for them.

        In a Ray worker (an activation sent here) the steps go into the
        activation's handoff, for the sending worker to submit and watch.
        """
        found = definitions or {}
        jobs = [(step_id, attempt, step_options(found.get(step_id))) for step_id, attempt in steps]
        handoff = current_handoff() if self.inside else None
        if handoff is not None:
            handoff.steps.extend((run_id, step_id, a, options) for step_id, a, options in jobs)
            return
        await self._submit_steps(run_id, jobs)

    async def _submit_steps(self, run_id: str, jobs: list[tuple[str, int, dict[str, Any]]]) -> None:
        """Submit ``run_step`` for each ``(step id, attempt, options)``, from the sender thread.

        Submitting runs in a thread of its own (the first call connects to Ray).
        A step Ray could not take is left to its lease: it is dispatched again
        after ``dispatch_timeout``.
        """

        def submit_all() -> None:
            connect(self.options)
            from pyworkflow_ray.tasks import run_step

            for step_id, attempt, options in jobs:
                try:
                    ref = self._remote(run_step, options).remote(run_id, step_id, attempt)
                except Exception as exc:  # the step's lease brings it back
                    logger.bind(run_id=run_id, step_id=step_id, attempt=attempt).warning(
                        "could not submit the Ray task of a step: {}", redact_text(str(exc))
                    )
                    continue
                self._watch(ref, run_id, step_id, attempt)

        try:
            future = self._sender.submit(submit_all)
        except RuntimeError:  # shut down: submit inline
            submit_all()
            return
        await asyncio.wrap_future(future)

    def _remote(self, task: Any, options: dict[str, Any]) -> Any:
        """``task`` with these options and the runtime_env, made once per task and option set.

        (Ray checks a ``runtime_env`` each time ``.options()`` is called.)
        """
        key = f"{id(task)}:{json.dumps(options, sort_keys=True)}"
        remote = self._remotes.get(key)
        if remote is None:
            remote = self._remotes[key] = task.options(runtime_env=self._runtime_env, **options)
        return remote

    def _watch(self, ref: Any, run_id: str, step_id: str, attempt: int) -> None:
        """When a step's Ray task ends, wake this process's worker; log a failed task.

        The outcome itself is in storage (recorded by the task), which made the
        run due; the wake-up saves waiting for the worker's next poll of storage.
        """
        with self._pending_lock:
            self._pending.add(ref)
        done = cast("concurrent.futures.Future[Any]", ref.future())

        def finished(fut: concurrent.futures.Future[Any]) -> None:
            with self._pending_lock:
                self._pending.discard(ref)
            # the step's outcome made its run due: claim now, not at the next poll
            try:
                self.notify(run_id)
            except RuntimeError:  # this process's loop has closed: nothing left to wake
                pass
            exc = fut.exception()
            if exc is not None:
                logger.bind(run_id=run_id, step_id=step_id, attempt=attempt).warning(
                    "the Ray task of a step failed ({}); its lease brings it back: {}",
                    type(exc).__name__,
                    redact_text(str(exc)),
                )

        done.add_done_callback(finished)

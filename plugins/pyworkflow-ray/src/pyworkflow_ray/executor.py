"""The ``ray`` executor: activations in this process's worker, step bodies as Ray tasks.

See docs/ray.md for why activations stay out of Ray: they are short and
bound by storage, and the durable timers they set must fire whether or not
any Ray task runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from loguru import logger

from pyworkflow.config import Settings
from pyworkflow.context import current_step_ids, report_step_worker
from pyworkflow.errors import ConfigError
from pyworkflow.executors.local import LocalExecutor
from pyworkflow.redaction import redact_text, redact_url
from pyworkflow_ray.settings import RaySettings

if TYPE_CHECKING:
    from pyworkflow.step import StepDefinition

__all__ = ["RAY_OPTIONS", "RayExecutor", "RayStepLost", "connect", "step_options", "worker_env"]

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
    serializer, lease and poll settings, the ``queues`` and ``tracing`` tables; the local
    executor with no embedded worker (Ray workers run step bodies only;
    activations and timers stay with ``pyworkflow worker``), so the Ray
    workers need not know this plugin's entry point.
    """
    env = {
        # the step body's process runs no activations: the local executor without a worker
        "PYWORKFLOW_EXECUTOR": "local",
        "PYWORKFLOW_EMBEDDED_WORKER": "false",
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


def _trace_headers() -> dict[str, str]:
    """The current OpenTelemetry context (the step attempt's span) as W3C trace headers.

    ``{}`` unless PyWorkflow's tracing is on: the Ray task makes it current around
    the body, so the user's own spans there nest under the attempt (docs/observability.md).
    """
    from pyworkflow.tracing import get_tracing

    if get_tracing() is None:
        return {}
    from opentelemetry import propagate

    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


class RayStepLost(RuntimeError):
    """The Ray worker process running a step's body died (more often than Ray retries)."""


class RayExecutor(LocalExecutor):
    """Activations in this process's worker; each dispatched step is one Ray task.

    The worker is a script's embedded one or ``pyworkflow worker`` (with
    ``executor = "ray"``): it claims due runs, replays them, fires timers and
    hands the steps they schedule to Ray, fire-and-forget. A Ray task runs
    :func:`pyworkflow.dispatch.run_dispatched_step` in its worker process
    (which takes the step's lease: a duplicate is ignored); a step whose Ray
    worker died is dispatched again when its lease runs out.
    """

    name = "ray"
    dispatches_steps = True
    wants_step_definitions = True
    #: a lone step without resources or queue: a Ray task the activation awaits
    #: (:meth:`inline_body`), recorded by the activation as the local executor does
    inline_lone_steps = True
    runs_workflows_elsewhere = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        scheme = settings.storage.partition("://")[0].lower()
        if scheme in _REFUSED:
            raise ConfigError(
                f"the 'ray' executor cannot use storage {redact_url(settings.storage)!r}: "
                f"{_REFUSED[scheme]}, and Ray runs step bodies in other processes (maybe on "
                "other hosts). Use SQLite (sqlite:///path.db, one host), Redis or PostgreSQL"
            )
        self.options = RaySettings.from_settings(settings)
        self.dispatch_timeout = self.options.dispatch_timeout
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
        """A lone step runs inline unless it declares ``resources`` or a ``queue``.

        Such a step is dispatched: Ray places it by its resources, ``runs show``
        tells while it waits for a worker, and its queue's place is taken by the
        Ray worker that runs it.
        """
        return not definition.resources and definition.queue is None

    def inline_body(
        self, definition: StepDefinition, body: Callable[..., Any]
    ) -> Callable[..., Any]:
        """An ``async`` stand-in for ``body`` that runs it as a Ray task and awaits it."""
        name = definition.name

        async def on_ray(*args: Any, **kwargs: Any) -> Any:
            return await self._run_body(name, args, kwargs)

        return on_ray

    async def _run_body(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Submit ``run_body`` for step ``name``; its value, or the body's own exception.

        A task cancelled here (the step timed out, the run was cancelled, the
        lease was lost) is cancelled in Ray. A Ray worker that died more often
        than Ray retries the task raises :class:`RayStepLost` (the step's retry
        policy decides what follows).
        """
        ids = current_step_ids()
        await self._connect()
        import ray
        from ray.exceptions import RayError, RayTaskError

        from pyworkflow_ray.tasks import run_body

        ref = self._remote(run_body, {}).remote((name, args, kwargs, ids, _trace_headers()))
        try:
            worker, ok, value = await asyncio.wrap_future(ref.future())
        except RayTaskError as exc:  # run_body itself failed (it returns the body's errors)
            cause = exc.cause
            if isinstance(cause, Exception):
                raise cause from None
            raise
        except RayError as exc:
            raise RayStepLost(
                f"the Ray worker running step {name!r} was lost ({type(exc).__name__}): "
                f"{redact_text(str(exc))}"
            ) from None
        except BaseException:
            ray.cancel(ref)
            raise
        report_step_worker(worker)
        if not ok:
            raise value
        return value

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
        """Submit one Ray task per step, placed by the step's resources; never waits for them.

        Submitting runs in a thread of its own (the first call connects to Ray).
        A step Ray could not take is left to its lease: it is dispatched again
        after ``dispatch_timeout``.
        """
        found = definitions or {}
        jobs = [(step_id, attempt, step_options(found.get(step_id))) for step_id, attempt in steps]

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

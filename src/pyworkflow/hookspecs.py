"""Every PyWorkflow plugin hook, typed and documented (pluggy project ``pyworkflow``)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:
    from pyworkflow.config import Settings
    from pyworkflow.executors.base import Executor
    from pyworkflow.models import Event, RunStatus
    from pyworkflow.serialization import Serializer
    from pyworkflow.storage.base import Storage

__all__ = [
    "ExecutorFactory",
    "ExecutorRegister",
    "SerializerRegister",
    "StorageFactory",
    "StorageRegister",
    "hookimpl",
    "hookspec",
]

#: Marks a function of this module as a hook specification.
hookspec = pluggy.HookspecMarker("pyworkflow")
hookimpl = pluggy.HookimplMarker("pyworkflow")
"""Marks a plugin's function as the implementation of a PyWorkflow hook.

The function's name is the hook's (``pyworkflow_register_storage``...); its
module is the one the distribution's ``pyworkflow`` entry point names.

```python
from pyworkflow.hookspecs import hookimpl

@hookimpl
def pyworkflow_run_status_changed(run_id, workflow, status):
    if status == "failed":
        alert_on_call(f"{workflow} run {run_id} failed")
```
"""


class StorageFactory(Protocol):
    """Builds a storage backend from its URL and the process settings."""

    def __call__(self, url: str, settings: Settings, /) -> Storage:
        """Return an unopened :class:`~pyworkflow.storage.base.Storage` for ``url``."""
        ...


class ExecutorFactory(Protocol):
    """Builds an executor from the process settings."""

    def __call__(self, settings: Settings, /) -> Executor:
        """Return an unstarted :class:`~pyworkflow.executors.base.Executor`."""
        ...


class StorageRegister(Protocol):
    """The ``register`` callable handed to :func:`pyworkflow_register_storage`."""

    def __call__(self, scheme: str, factory: StorageFactory, /) -> None:
        """Serve storage URLs whose scheme (the part before ``://``) is ``scheme``."""
        ...


class ExecutorRegister(Protocol):
    """The ``register`` callable handed to :func:`pyworkflow_register_executors`."""

    def __call__(self, name: str, factory: ExecutorFactory, /) -> None:
        """Provide the executor selected by ``executor = "<name>"`` in config."""
        ...


class SerializerRegister(Protocol):
    """The ``register`` callable handed to :func:`pyworkflow_register_serializers`."""

    def __call__(self, name: str, serializer: Serializer, /) -> None:
        """Provide the serializer selected by ``serializer = "<name>"`` (its ``name``)."""
        ...


# ----- registration hooks: called once per process, when the registries are first needed -----


@hookspec
def pyworkflow_register_storage(register: StorageRegister) -> None:
    """Register storage backends, one per URL scheme.

    Called once per process, the first time a storage is created. Core serves
    ``memory``, ``sqlite`` and ``file`` through this same hook, from
    :mod:`pyworkflow.default_plugins`.

    :param register:
        Call ``register(scheme, factory)`` for each URL scheme the plugin
        serves, e.g. ``register("redis", RedisStorage.from_url)``. ``scheme``
        is everything before ``://`` in the ``storage`` config key, so
        ``postgresql+asyncpg`` is its own scheme. ``factory(url, settings)``
        returns an unopened :class:`~pyworkflow.storage.base.Storage`; the
        runtime calls its ``open()``. A scheme registered by two plugins is
        an error naming both.

    The plugin module, named by the distribution's entry point
    (``[project.entry-points.pyworkflow]`` ``mystore = "pyworkflow_mystore.plugin"``):

    ```python
    from pyworkflow.hookspecs import StorageRegister, hookimpl

    @hookimpl
    def pyworkflow_register_storage(register: StorageRegister) -> None:
        from pyworkflow_mystore.storage import MyStorage

        register("mystore", lambda url, settings: MyStorage(url))
    ```

    ``storage = "mystore://..."`` in ``[tool.pyworkflow]`` then selects it.
    """


@hookspec
def pyworkflow_register_executors(register: ExecutorRegister) -> None:
    """Register executors, selected by name with the ``executor`` config key.

    Called once per process, the first time an executor is created. Core
    provides ``local`` through this same hook, from :mod:`pyworkflow.default_plugins`.

    :param register:
        Call ``register(name, factory)`` for each executor the plugin
        provides. ``factory(settings)`` returns an unstarted
        :class:`~pyworkflow.executors.base.Executor`; plugin options live in
        ``settings.plugin_tables[<plugin>]`` (``[tool.pyworkflow.<plugin>]``).
        A name registered by two plugins is an error naming both.
    """


@hookspec
def pyworkflow_register_serializers(register: SerializerRegister) -> None:
    """Register serializers, selected by name with the ``serializer`` config key.

    Called once per process, the first time a serializer is looked up. Core
    provides ``json`` and ``pickle`` through this same hook, from
    :mod:`pyworkflow.default_plugins`.

    :param register:
        Call ``register(name, serializer)`` for each serializer. The
        serializer has a ``name`` attribute equal to ``name``,
        ``dumps(value) -> str`` and ``loads(text) -> Any`` (see
        :class:`pyworkflow.serialization.Serializer`). Every run records
        the name of the serializer it started with and decodes its payloads
        with it, so a name must keep meaning the same format forever.
    """


# ----- observers: called on every matching change, results ignored -----


@hookspec
def pyworkflow_events_appended(run_id: str, events: Sequence[Event]) -> None:
    """Observe events just appended to a run's log (for logging, metrics, tracing).

    Called in the process that appended them, after the append committed.
    Keep it fast and do not raise: an exception propagates to the code that
    appended the events.

    :param run_id:
        The run whose log grew.
    :param events:
        The appended events, in ``seq`` order.
    """


@hookspec
def pyworkflow_run_status_changed(run_id: str, workflow: str, status: RunStatus) -> None:
    """Observe a run's status change (for example to ``completed`` or ``failed``).

    Called in the process that made the change, after it committed. Keep it
    fast and do not raise: an exception propagates to the code that changed
    the status.

    :param run_id:
        The run whose status changed.
    :param workflow:
        The run's workflow name.
    :param status:
        The new status.
    """


# ----- wrappers: plugins may wrap user code -----


@hookspec
def pyworkflow_step_body_context(
    run_id: str, step_id: str, name: str, attempt: int
) -> AbstractAsyncContextManager[None] | None:
    """Return an async context manager to hold around one step attempt's body, or None.

    Called in the process that runs the attempt, just before its body starts;
    the body (a sync body in its worker thread too) runs inside every context
    manager returned; being async, one may look things up in storage first.
    Tracing uses it to make the attempt's span the current OpenTelemetry
    context, so spans the body makes nest under it. When no plugin implements
    the hook, bodies run with no wrapper at no cost.

    :param run_id:
        The run the step belongs to.
    :param step_id:
        The step call's correlation id in that run.
    :param name:
        The step's name.
    :param attempt:
        The attempt number, from 1.
    """

"""The one PluginManager and typed doorway to it: the only module that calls ``pm.hook``."""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import re
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs
import pluggy

import pyworkflow
from pyworkflow import hookspecs
from pyworkflow.errors import ConfigError, PluginError
from pyworkflow.executors.base import Executor
from pyworkflow.redaction import redact_url
from pyworkflow.storage.base import Storage

if TYPE_CHECKING:
    from pyworkflow.config import Settings
    from pyworkflow.hookspecs import ExecutorFactory, StorageFactory
    from pyworkflow.models import Event, RunStatus
    from pyworkflow.serialization import Serializer

__all__ = [
    "CORE_DISTRIBUTION",
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "PROJECT",
    "PluginInfo",
    "Registry",
    "check_hooks",
    "create_executor",
    "create_storage",
    "executor_names",
    "get_plugin_manager",
    "get_serializer",
    "has_event_observers",
    "has_step_body_contexts",
    "list_plugins",
    "make_plugin_manager",
    "notify_events_appended",
    "notify_run_status_changed",
    "reset_plugin_manager",
    "serializer_names",
    "step_body_contexts",
    "storage_schemes",
]

#: pluggy project name of the hook markers.
PROJECT = "pyworkflow"
#: Entry-point group installed plugins declare (``[project.entry-points.pyworkflow]``).
ENTRY_POINT_GROUP = "pyworkflow"
#: The distribution the built-in plugins belong to.
CORE_DISTRIBUTION = "pyworkflow"
#: The built-in plugins, by plugin name: registered from these modules of
#: :mod:`pyworkflow.default_plugins` before any entry point, so PyWorkflow works
#: from a source checkout that was never installed. The names are those of the
#: entry points core declared before, so ``pyworkflow plugins`` lists the same
#: names and the entry points an older install's metadata still declares are
#: recognised as these.
DEFAULT_PLUGINS: dict[str, str] = {
    "file_storage": "pyworkflow.default_plugins.file_storage",
    "local_executor": "pyworkflow.default_plugins.local_executor",
    "memory_storage": "pyworkflow.default_plugins.memory_storage",
    "serializers": "pyworkflow.default_plugins.serializers",
    "sqlite_storage": "pyworkflow.default_plugins.sqlite_storage",
}

T = TypeVar("T")

_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]*")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


# ----- building the plugin manager -----


def make_plugin_manager(*, load_entrypoints: bool = True) -> pluggy.PluginManager:
    """A new PluginManager with PyWorkflow's hookspecs.

    With ``load_entrypoints`` (what the process-wide manager does) the
    built-in plugins (:data:`DEFAULT_PLUGINS`) are registered, then every
    installed ``pyworkflow`` entry point is imported and registered; tests
    pass ``False`` for an empty manager, register plugin objects themselves,
    then install it with :func:`reset_plugin_manager`.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    if load_entrypoints:
        _load_default_plugins(pm)
        _load_entrypoints(pm)
        check_hooks(pm)
    return pm


def _load_default_plugins(pm: pluggy.PluginManager) -> None:
    """Register the built-in plugins, as any plugin is registered: through the manager."""
    for name, module in DEFAULT_PLUGINS.items():
        if not pm.is_blocked(name) and pm.get_plugin(name) is None:
            pm.register(importlib.import_module(module), name=name)


def check_hooks(pm: pluggy.PluginManager) -> None:
    """Refuse hook implementations that match no PyWorkflow hook (a misspelled name).

    pluggy registers a ``@hookimpl`` whose name no hookspec declares and never
    calls it, so a plugin defining ``pyworkflow_register_storages`` would load
    without complaint. This is pluggy's ``check_pending()`` with a
    :class:`PluginError` naming each plugin, its distribution, the unknown hook
    and the closest PyWorkflow hook. Implementations marked
    ``@hookimpl(optionalhook=True)`` are allowed, as in pluggy.
    """
    callers = {
        name: caller
        for name, caller in vars(pm.hook).items()
        if not name.startswith("_") and isinstance(caller, pluggy.HookCaller)
    }
    known = sorted(name for name, caller in callers.items() if caller.has_spec())
    problems: list[str] = []
    for name, caller in sorted(callers.items()):
        if caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook:
                continue
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            plugin = _describe(pm, impl.plugin_name)
            problems.append(f"{plugin} implements unknown hook {name!r}{hint}")
    if problems:
        raise PluginError(
            "; ".join(problems) + f". PyWorkflow's hooks are: {', '.join(known)}. Rename the "
            "function, or mark it @hookimpl(optionalhook=True) if it is meant for a hook that "
            "may not exist, or uninstall the distribution"
        )
    try:
        pm.check_pending()  # pluggy's own rule, in case it grows beyond the loop above
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{exc}; rename the hook or uninstall the plugin") from exc


def _dist_label(dist: importlib.metadata.Distribution) -> str:
    return f"{dist.metadata['Name']} {dist.version}"


def _load_entrypoints(pm: pluggy.PluginManager) -> None:
    """Register every ``pyworkflow`` entry point; a broken one is a PluginError naming it.

    An entry point named like a built-in plugin is skipped when PyWorkflow's
    own distribution declares it (the metadata of an install made before the
    built-ins moved to :mod:`pyworkflow.default_plugins`) and refused from any
    other distribution.
    """
    seen: dict[str, str] = {}
    for dist in list(importlib.metadata.distributions()):
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or pm.is_blocked(ep.name):
                continue
            dist_name = dist.metadata["Name"]
            if ep.name in DEFAULT_PLUGINS:
                if dist_name == CORE_DISTRIBUTION:
                    continue
                raise PluginError(
                    f"distribution {_dist_label(dist)} declares a {ENTRY_POINT_GROUP!r} entry "
                    f"point named {ep.name!r}, the name of a built-in plugin; rename that entry "
                    "point or uninstall the distribution"
                )
            other = seen.setdefault(ep.name, dist_name)
            if other != dist_name:
                raise PluginError(
                    f"two distributions declare a {ENTRY_POINT_GROUP!r} entry point named "
                    f"{ep.name!r}: {other} and {dist_name}; uninstall one of them"
                )
            if pm.get_plugin(ep.name) is not None:
                continue
            try:
                ep.load()
            except Exception as exc:
                raise PluginError(
                    f"cannot load plugin entry point {ep.name!r} = {ep.value!r} "
                    f"(group {ENTRY_POINT_GROUP!r}) of distribution {_dist_label(dist)}: "
                    f"{type(exc).__name__}: {exc}; reinstall or uninstall that distribution"
                ) from exc
    # Every entry point imports now (modules are cached), and pluggy records the distributions.
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)


_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None
_registries: _Registries | None = None


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide PluginManager, with all installed plugins loaded on first use."""
    global _pm
    pm = _pm
    if pm is None:
        with _lock:
            if _pm is None:
                _pm = make_plugin_manager(load_entrypoints=True)
            pm = _pm
    return pm


def reset_plugin_manager(pm: pluggy.PluginManager | None = None) -> None:
    """Forget the cached manager and registries (for tests).

    With ``pm`` (e.g. from ``make_plugin_manager(load_entrypoints=False)``)
    that manager becomes the process-wide one; without, the next use loads
    entry points again.
    """
    global _pm, _registries
    with _lock:
        _pm = pm
        _registries = None


def _distribution(pm: pluggy.PluginManager, plugin_name: str) -> tuple[str, str] | None:
    """The distribution name and version plugin ``plugin_name`` came from, if known.

    Entry-point plugins come from the distribution that declared them; the
    built-ins from PyWorkflow itself (installed or not).
    """
    plugin = pm.get_plugin(plugin_name)
    for registered, dist in pm.list_plugin_distinfo():
        if registered is plugin:
            return dist.project_name, dist.version
    module = DEFAULT_PLUGINS.get(plugin_name)
    if module is not None and getattr(plugin, "__name__", None) == module:
        return CORE_DISTRIBUTION, pyworkflow.__version__
    return None


def _describe(pm: pluggy.PluginManager, plugin_name: str) -> str:
    """``plugin 'x' (distribution pkg 1.0)``, or ``plugin 'x'`` when registered directly."""
    dist = _distribution(pm, plugin_name)
    if dist is not None:
        return f"plugin {plugin_name!r} (distribution {dist[0]} {dist[1]})"
    return f"plugin {plugin_name!r}"


# ----- registries -----


class Registry(Generic[T]):
    """Names to implementations for one seam, with the plugin that registered each.

    Every registration goes through :meth:`add`, so a duplicate name or a
    bad registration fails here with the offending plugins named.
    """

    def __init__(
        self,
        kind: str,
        *,
        describe: Callable[[str], str] = lambda plugin: f"plugin {plugin!r}",
        validate: Callable[[str, Any], str | None] = lambda name, value: None,
    ) -> None:
        """``kind`` names the seam in messages (``"storage scheme"``); ``validate``
        returns what is wrong with a registration, or ``None``."""
        self.kind = kind
        self._describe = describe
        self._validate = validate
        self._items: dict[str, T] = {}
        self._providers: dict[str, str] = {}

    def add(self, name: str, value: T, *, plugin: str) -> None:
        """Register ``value`` as ``name`` on behalf of plugin ``plugin``."""
        problem = self._validate(name, value)
        if problem is not None:
            raise PluginError(
                f"{self._describe(plugin)} registered an invalid {self.kind} {name!r}: {problem}"
            )
        if name in self._items:
            raise PluginError(
                f"{self.kind} {name!r} is registered twice: by "
                f"{self._describe(self._providers[name])} and by {self._describe(plugin)}; "
                "uninstall one of them (or block one with PluginManager.set_blocked)"
            )
        self._items[name] = value
        self._providers[name] = plugin

    def register_for(self, plugin: str) -> Callable[[str, T], None]:
        """The ``register`` callable handed to ``plugin``'s hook implementation."""

        def register(name: str, value: T, /) -> None:
            self.add(name, value, plugin=plugin)

        return register

    def get(self, name: str) -> T | None:
        """The implementation registered as ``name``, if any."""
        return self._items.get(name)

    def provider(self, name: str) -> str:
        """The name of the plugin that registered ``name``."""
        return self._providers[name]

    def describe_provider(self, name: str) -> str:
        """The plugin that registered ``name``, with its distribution, for messages."""
        return self._describe(self._providers[name])

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def names_from(self, plugin: str) -> tuple[str, ...]:
        """The names ``plugin`` registered, sorted."""
        return tuple(sorted(n for n, p in self._providers.items() if p == plugin))

    def as_dict(self) -> dict[str, T]:
        """A copy of the registry, sorted by name."""
        return {name: self._items[name] for name in self.names()}

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)


def _validate_scheme(name: str, factory: Any) -> str | None:
    if not isinstance(name, str) or not _SCHEME.fullmatch(name):
        return "a URL scheme is lowercase letters, digits, '+', '-' or '.', starting with a letter"
    if not callable(factory):
        return f"the factory must be callable (url, settings) -> Storage, got {factory!r}"
    return None


def _validate_executor(name: str, factory: Any) -> str | None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return "a name is letters, digits, '_', '-' or '.'"
    if not callable(factory):
        return f"the factory must be callable (settings) -> Executor, got {factory!r}"
    return None


def _validate_serializer(name: str, serializer: Any) -> str | None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return "a name is letters, digits, '_', '-' or '.'"
    missing = [attr for attr in ("dumps", "loads") if not callable(getattr(serializer, attr, None))]
    if missing:
        return f"{serializer!r} has no callable {' or '.join(missing)}"
    if getattr(serializer, "name", None) != name:
        return f"its name attribute is {getattr(serializer, 'name', None)!r}, not {name!r}"
    return None


@attrs.frozen
class _Registries:
    storage: Registry[StorageFactory]
    executors: Registry[ExecutorFactory]
    serializers: Registry[Serializer]


def _collect(pm: pluggy.PluginManager, hook_name: str, registry: Registry[Any]) -> None:
    """Call each implementation of ``hook_name`` with a ``register`` bound to its plugin."""
    caller: pluggy.HookCaller = getattr(pm.hook, hook_name)
    for impl in reversed(caller.get_hookimpls()):  # pluggy's own call order
        if impl.hookwrapper or impl.wrapper:
            raise PluginError(f"{_describe(pm, impl.plugin_name)}: {hook_name} cannot be a wrapper")
        kwargs = {"register": registry.register_for(impl.plugin_name)}
        try:
            impl.function(*(kwargs[arg] for arg in impl.argnames))
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(
                f"{_describe(pm, impl.plugin_name)} failed in {hook_name}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc


def _build_registries(pm: pluggy.PluginManager) -> _Registries:
    check_hooks(pm)  # also for a manager whose plugins were registered by hand

    def describe(plugin: str) -> str:
        return _describe(pm, plugin)

    registries = _Registries(
        storage=Registry("storage scheme", describe=describe, validate=_validate_scheme),
        executors=Registry("executor", describe=describe, validate=_validate_executor),
        serializers=Registry("serializer", describe=describe, validate=_validate_serializer),
    )
    _collect(pm, "pyworkflow_register_storage", registries.storage)
    _collect(pm, "pyworkflow_register_executors", registries.executors)
    _collect(pm, "pyworkflow_register_serializers", registries.serializers)
    return registries


def _get_registries() -> _Registries:
    global _registries
    registries = _registries
    if registries is None:
        with _lock:
            if _registries is None:
                _registries = _build_registries(get_plugin_manager())
            registries = _registries
    return registries


# ----- the typed doorway -----


def _available(names: list[str]) -> str:
    return ", ".join(names) if names else "(none: no plugin registered one)"


def _came_from(settings: Settings, key: str, value: str) -> str:
    source = settings.source_of(key)
    if getattr(settings, key) != value or source == "default":
        return ""
    return f"; the value came from {source}"


def storage_schemes() -> dict[str, StorageFactory]:
    """Registered storage URL schemes and their factories, sorted by scheme."""
    return _get_registries().storage.as_dict()


def create_storage(url: str, settings: Settings) -> Storage:
    """An unopened storage for ``url``, built by the plugin serving its scheme.

    The scheme is everything before ``://`` (``postgresql+asyncpg`` stays
    whole). Raises :class:`ConfigError` for a URL without a scheme or with an
    unknown one, listing the registered schemes.
    """
    registry = _get_registries().storage
    scheme, sep, _ = url.partition("://")
    shown = redact_url(url)
    if not sep or not scheme:
        raise ConfigError(
            f"storage URL {shown!r} (config key 'storage') has no scheme; write <scheme>://..., "
            f"e.g. 'sqlite:///.pyworkflow/pyworkflow.db' or 'memory://'; "
            f"available: {_available(registry.names())}{_came_from(settings, 'storage', url)}"
        )
    scheme = scheme.lower()
    factory = registry.get(scheme)
    if factory is None:
        raise ConfigError(
            f"unknown storage scheme {scheme!r} in storage URL {shown!r} (config key 'storage'); "
            f"available: {_available(registry.names())}{_came_from(settings, 'storage', url)}; "
            f"install the plugin that serves '{scheme}://' or correct the URL"
        )
    storage = factory(url, settings)
    if not isinstance(storage, Storage):
        raise PluginError(
            f"the storage factory for scheme {scheme!r} of {registry.describe_provider(scheme)} "
            f"returned {type(storage).__name__}, not a pyworkflow.storage.base.Storage"
        )
    storage.max_payload_bytes = settings.max_payload_bytes  # the size limit of stream chunks
    return storage


def executor_names() -> list[str]:
    """Registered executor names, sorted."""
    return _get_registries().executors.names()


def create_executor(name: str, settings: Settings) -> Executor:
    """An unstarted executor ``name``; unknown names are a :class:`ConfigError` listing them."""
    registry = _get_registries().executors
    factory = registry.get(name)
    if factory is None:
        raise ConfigError(
            f"unknown executor {name!r} (config key 'executor'); "
            f"available: {_available(registry.names())}{_came_from(settings, 'executor', name)}; "
            f"install the plugin that provides it (e.g. pyworkflow-{name}) or correct the name"
        )
    executor = factory(settings)
    if not isinstance(executor, Executor):
        raise PluginError(
            f"the factory of executor {name!r} of {registry.describe_provider(name)} "
            f"returned {type(executor).__name__}, not a pyworkflow.executors.base.Executor"
        )
    return executor


def serializer_names() -> list[str]:
    """Registered serializer names, sorted."""
    return _get_registries().serializers.names()


def get_serializer(name: str) -> Serializer:
    """The serializer registered as ``name``; unknown names are a :class:`ConfigError`.

    ``name`` is the ``serializer`` config key or the name recorded with a
    stored payload, so a payload written by a plugin's serializer needs that
    plugin installed to decode.
    """
    registry = _get_registries().serializers
    serializer = registry.get(name)
    if serializer is None:
        raise ConfigError(
            f"unknown serializer {name!r} (config key 'serializer', or the serializer recorded "
            f"with a stored payload); available: {_available(registry.names())}"
        )
    return serializer


def has_event_observers() -> bool:
    """Whether any plugin implements ``pyworkflow_events_appended``."""
    return bool(get_plugin_manager().hook.pyworkflow_events_appended.get_hookimpls())


def notify_events_appended(run_id: str, events: Sequence[Event]) -> None:
    """Tell observer plugins that ``events`` were appended to run ``run_id``."""
    get_plugin_manager().hook.pyworkflow_events_appended(run_id=run_id, events=events)


def notify_run_status_changed(run_id: str, workflow: str, status: RunStatus) -> None:
    """Tell observer plugins that run ``run_id`` of ``workflow`` is now ``status``."""
    get_plugin_manager().hook.pyworkflow_run_status_changed(
        run_id=run_id, workflow=workflow, status=status
    )


def has_step_body_contexts() -> bool:
    """Whether any plugin implements ``pyworkflow_step_body_context``."""
    return bool(get_plugin_manager().hook.pyworkflow_step_body_context.get_hookimpls())


def step_body_contexts(
    run_id: str, step_id: str, name: str, attempt: int
) -> list[AbstractAsyncContextManager[None]]:
    """The context managers plugins want held around a step attempt's body (outermost first)."""
    found = get_plugin_manager().hook.pyworkflow_step_body_context(
        run_id=run_id, step_id=step_id, name=name, attempt=attempt
    )
    return [cm for cm in reversed(found) if cm is not None]


@attrs.frozen
class PluginInfo:
    """One registered plugin and what it provides (for ``pyworkflow plugins``)."""

    #: The plugin's name: its entry-point name, or the name it was registered under.
    name: str
    #: The distribution that declared its entry point, if it came from one.
    distribution: str | None = None
    #: That distribution's version.
    version: str | None = None
    storage_schemes: tuple[str, ...] = ()
    executors: tuple[str, ...] = ()
    serializers: tuple[str, ...] = ()
    #: Every PyWorkflow hook the plugin implements, sorted.
    hooks: tuple[str, ...] = ()


def list_plugins() -> list[PluginInfo]:
    """Every registered plugin with its distribution and what it provides, sorted by name."""
    pm = get_plugin_manager()
    registries = _get_registries()
    infos: list[PluginInfo] = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked
            continue
        dist = _distribution(pm, name)
        infos.append(
            PluginInfo(
                name=name,
                distribution=dist[0] if dist is not None else None,
                version=dist[1] if dist is not None else None,
                storage_schemes=registries.storage.names_from(name),
                executors=registries.executors.names_from(name),
                serializers=registries.serializers.names_from(name),
                hooks=tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())),
            )
        )
    return sorted(infos, key=lambda info: info.name)

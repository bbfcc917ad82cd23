"""The plugin manager, its registries and the typed doorway in pyworkflow.plugins."""

from __future__ import annotations

import email.message
import importlib.metadata
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pluggy
import pytest

import pyworkflow
from pyworkflow import plugins
from pyworkflow.config import Settings, load_settings
from pyworkflow.errors import ConfigError, PluginError
from pyworkflow.executors.base import Executor
from pyworkflow.hookspecs import StorageRegister, hookimpl
from pyworkflow.models import Event, EventType, RunStatus, utcnow
from pyworkflow.storage.memory import MemoryStorage


class FakeExecutor(Executor):
    name = "fake"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def notify(self, run_id: str | None = None) -> None:
        pass


class FakeSerializer:
    def __init__(self, name: str) -> None:
        self.name = name

    def dumps(self, value: Any) -> str:
        return repr(value)

    def loads(self, text: str) -> Any:
        return text


class StoragePlugin:
    @hookimpl
    def pyworkflow_register_storage(self, register: Callable[..., None]) -> None:
        register("memory", lambda url, settings: MemoryStorage(url))
        register("postgresql+asyncpg", lambda url, settings: MemoryStorage(url))


class ExecutorPlugin:
    @hookimpl
    def pyworkflow_register_executors(self, register: Callable[..., None]) -> None:
        register("fake", FakeExecutor)


class SerializerPlugin:
    @hookimpl
    def pyworkflow_register_serializers(self, register: Callable[..., None]) -> None:
        register("repr", FakeSerializer("repr"))


class ObserverPlugin:
    def __init__(self) -> None:
        self.appended: list[tuple[str, Sequence[Event]]] = []
        self.statuses: list[tuple[str, str, RunStatus]] = []

    @hookimpl
    def pyworkflow_events_appended(self, run_id: str, events: Sequence[Event]) -> None:
        self.appended.append((run_id, events))

    @hookimpl
    def pyworkflow_run_status_changed(self, run_id: str, workflow: str, status: RunStatus) -> None:
        self.statuses.append((run_id, workflow, status))


@pytest.fixture
def pm() -> Iterator[pluggy.PluginManager]:
    """A plugin manager without entry points, installed as the process-wide one."""
    manager = plugins.make_plugin_manager(load_entrypoints=False)
    plugins.reset_plugin_manager(manager)
    yield manager
    plugins.reset_plugin_manager()


def install(pm: pluggy.PluginManager, **named: object) -> None:
    for name, plugin in named.items():
        pm.register(plugin, name=name)


def test_storage_plugin_found_by_create_storage(pm: pluggy.PluginManager) -> None:
    install(pm, teststorage=StoragePlugin())
    settings = Settings()
    assert list(plugins.storage_schemes()) == ["memory", "postgresql+asyncpg"]

    storage = plugins.create_storage("memory://", settings)
    assert isinstance(storage, MemoryStorage)
    # The whole scheme before :// picks the backend, '+driver' included.
    assert isinstance(
        plugins.create_storage("postgresql+asyncpg://u@h/db", settings), MemoryStorage
    )
    assert isinstance(plugins.create_storage("MEMORY://", settings), MemoryStorage)


def test_unknown_storage_scheme_lists_available(pm: pluggy.PluginManager) -> None:
    install(pm, teststorage=StoragePlugin())
    with pytest.raises(ConfigError) as info:
        plugins.create_storage("foo://x", Settings())
    assert str(info.value).startswith(
        "unknown storage scheme 'foo' in storage URL 'foo://x' (config key 'storage'); "
        "available: memory, postgresql+asyncpg"
    )


def test_unknown_storage_scheme_names_where_the_url_came_from(
    pm: pluggy.PluginManager, tmp_path: Any
) -> None:
    install(pm, teststorage=StoragePlugin())
    settings = load_settings(cwd=tmp_path, environ={"PYWORKFLOW_STORAGE": "redis://localhost"})
    with pytest.raises(ConfigError, match="came from env PYWORKFLOW_STORAGE"):
        plugins.create_storage(settings.storage, settings)


def test_storage_url_without_scheme(pm: pluggy.PluginManager) -> None:
    install(pm, teststorage=StoragePlugin())
    with pytest.raises(ConfigError, match=r"'pw\.db' \(config key 'storage'\) has no scheme"):
        plugins.create_storage("pw.db", Settings())


def test_executor_lookup(pm: pluggy.PluginManager) -> None:
    install(pm, testexec=ExecutorPlugin())
    settings = Settings(executor="fake")
    executor = plugins.create_executor("fake", settings)
    assert isinstance(executor, FakeExecutor) and executor.settings is settings
    assert plugins.executor_names() == ["fake"]
    with pytest.raises(ConfigError, match=r"unknown executor 'celery' .*available: fake"):
        plugins.create_executor("celery", settings)


def test_serializer_lookup(pm: pluggy.PluginManager) -> None:
    install(pm, testser=SerializerPlugin())
    assert plugins.get_serializer("repr").dumps(1) == "1"
    assert plugins.serializer_names() == ["repr"]
    with pytest.raises(ConfigError, match=r"unknown serializer 'json' .*available: repr"):
        plugins.get_serializer("json")


def test_nothing_registered_says_so(pm: pluggy.PluginManager) -> None:
    with pytest.raises(ConfigError, match=r"available: \(none"):
        plugins.create_executor("local", Settings())


def test_duplicate_registration_names_both_plugins(pm: pluggy.PluginManager) -> None:
    class Other:
        @hookimpl
        def pyworkflow_register_storage(self, register: Callable[..., None]) -> None:
            register("memory", lambda url, settings: MemoryStorage(url))

    install(pm, first_storage=StoragePlugin(), second_storage=Other())
    with pytest.raises(PluginError) as info:
        plugins.storage_schemes()
    message = str(info.value)
    assert "storage scheme 'memory' is registered twice" in message
    assert "plugin 'first_storage'" in message
    assert "plugin 'second_storage'" in message


def test_duplicate_names_distribution_of_entry_point_plugins(pm: pluggy.PluginManager) -> None:
    class Dist:
        project_name = "pyworkflow-dup"
        version = "1.2.3"
        metadata = {"name": "pyworkflow-dup"}

    first, second = ExecutorPlugin(), ExecutorPlugin()
    install(pm, local_one=first, dup_ep=second)
    # What load_setuptools_entrypoints records for a plugin from an entry point:
    pm._plugin_distinfo.append((second, Dist()))  # type: ignore[arg-type]  # a stand-in DistFacade
    with pytest.raises(
        PluginError, match=r"plugin 'dup_ep' \(distribution pyworkflow-dup 1\.2\.3\)"
    ):
        plugins.executor_names()


@pytest.mark.parametrize(
    ("hook", "args", "problem"),
    [
        ("pyworkflow_register_storage", ("Bad Scheme", MemoryStorage), "URL scheme"),
        ("pyworkflow_register_storage", ("ok", "not callable"), "must be callable"),
        ("pyworkflow_register_executors", ("x", None), "must be callable"),
        ("pyworkflow_register_serializers", ("x", object()), "no callable dumps or loads"),
        ("pyworkflow_register_serializers", ("x", FakeSerializer("y")), "name attribute is 'y'"),
    ],
)
def test_invalid_registration(
    pm: pluggy.PluginManager, hook: str, args: tuple[Any, ...], problem: str
) -> None:
    plugin = types.SimpleNamespace()

    def impl(register: Callable[..., None]) -> None:
        register(*args)

    setattr(plugin, hook, hookimpl(impl))
    install(pm, badplugin=plugin)
    with pytest.raises(PluginError, match=rf"plugin 'badplugin' registered an invalid .*{problem}"):
        plugins.list_plugins()


def test_failing_register_hook_names_plugin(pm: pluggy.PluginManager) -> None:
    class Broken:
        @hookimpl
        def pyworkflow_register_executors(self, register: Callable[..., None]) -> None:
            raise RuntimeError("boom")

    install(pm, brokenplugin=Broken())
    with pytest.raises(PluginError, match=r"'brokenplugin' failed in .*_executors.*boom"):
        plugins.executor_names()


def test_factory_returning_wrong_type(pm: pluggy.PluginManager) -> None:
    class Wrong:
        @hookimpl
        def pyworkflow_register_storage(self, register: Callable[..., None]) -> None:
            register("weird", lambda url, settings: object())

    install(pm, wrong=Wrong())
    with pytest.raises(PluginError, match="returned object, not a pyworkflow"):
        plugins.create_storage("weird://", Settings())


def test_registries_built_once_and_reset(pm: pluggy.PluginManager) -> None:
    calls: list[int] = []

    class Counting:
        @hookimpl
        def pyworkflow_register_executors(self, register: Callable[..., None]) -> None:
            calls.append(1)
            register("fake", FakeExecutor)

    install(pm, counting=Counting())
    plugins.executor_names()
    plugins.create_executor("fake", Settings())
    assert calls == [1]
    plugins.reset_plugin_manager(pm)
    plugins.executor_names()
    assert calls == [1, 1]


def test_observers_get_called(pm: pluggy.PluginManager) -> None:
    observer = ObserverPlugin()
    install(pm, observer=observer)
    event = Event("r1", 1, EventType.WORKFLOW_STARTED, None, utcnow(), {})
    plugins.notify_events_appended("r1", [event])
    plugins.notify_run_status_changed("r1", "greet", RunStatus.COMPLETED)
    assert observer.appended == [("r1", [event])]
    assert observer.statuses == [("r1", "greet", RunStatus.COMPLETED)]


def test_list_plugins(pm: pluggy.PluginManager) -> None:
    install(pm, s=StoragePlugin(), e=ExecutorPlugin(), z=SerializerPlugin(), o=ObserverPlugin())
    infos = {info.name: info for info in plugins.list_plugins()}
    assert sorted(infos) == ["e", "o", "s", "z"]
    assert infos["s"].storage_schemes == ("memory", "postgresql+asyncpg")
    assert infos["e"].executors == ("fake",)
    assert infos["z"].serializers == ("repr",)
    assert infos["o"].hooks == ("pyworkflow_events_appended", "pyworkflow_run_status_changed")
    assert infos["s"].distribution is None and infos["s"].version is None


class FakeDist:
    """Enough of importlib.metadata.Distribution for entry-point loading."""

    def __init__(self, name: str, entry_points: list[importlib.metadata.EntryPoint]) -> None:
        self.metadata = email.message.Message()  # case-insensitive, like the real metadata
        self.metadata["Name"] = name
        self.version = "9.9"
        self.entry_points = entry_points


def fake_distributions(monkeypatch: pytest.MonkeyPatch, *dists: FakeDist) -> None:
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: list(dists))


def test_entry_point_import_error_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = importlib.metadata.EntryPoint("broken", "no_such_module_xyz.plugin", "pyworkflow")
    fake_distributions(monkeypatch, FakeDist("pyworkflow-broken", [ep]))
    with pytest.raises(PluginError) as info:
        plugins.make_plugin_manager(load_entrypoints=True)
    message = str(info.value)
    assert "'broken'" in message
    assert "pyworkflow-broken 9.9" in message
    assert "No module named 'no_such_module_xyz'" in message


def fake_plugin_module(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """An importable module ``name`` serving the storage scheme ``extra``."""
    module = types.ModuleType(name)

    @hookimpl
    def pyworkflow_register_storage(register: StorageRegister) -> None:
        register("extra", lambda url, settings: MemoryStorage(url))

    module.pyworkflow_register_storage = pyworkflow_register_storage  # type: ignore[attr-defined]  # a module built at run time
    monkeypatch.setitem(sys.modules, name, module)


def test_entry_points_load_and_record_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_plugin_module(monkeypatch, "extra_plugin_xyz")
    eps = [
        importlib.metadata.EntryPoint("extra", "extra_plugin_xyz", "pyworkflow"),
        importlib.metadata.EntryPoint("other_group", "no_such_module_xyz", "console_scripts"),
    ]
    fake_distributions(monkeypatch, FakeDist("pyworkflow-extra", eps))
    pm = plugins.make_plugin_manager(load_entrypoints=True)
    plugins.reset_plugin_manager(pm)
    try:
        infos = {info.name: info for info in plugins.list_plugins()}
        assert sorted(infos) == sorted(["extra", *plugins.DEFAULT_PLUGINS])
        info = infos["extra"]
        assert (info.distribution, info.version) == ("pyworkflow-extra", "9.9")
        assert info.storage_schemes == ("extra",)
    finally:
        plugins.reset_plugin_manager()


def test_built_ins_are_registered_without_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distributions(monkeypatch)  # nothing installed, as in a source checkout
    pm = plugins.make_plugin_manager(load_entrypoints=True)
    plugins.reset_plugin_manager(pm)
    try:
        assert list(plugins.storage_schemes()) == ["file", "memory", "sqlite"]
        assert plugins.executor_names() == ["local"]
        assert plugins.serializer_names() == ["json", "pickle"]
        infos = {info.name: info for info in plugins.list_plugins()}
        assert sorted(infos) == sorted(plugins.DEFAULT_PLUGINS)
        assert {(i.distribution, i.version) for i in infos.values()} == {
            ("pyworkflow", pyworkflow.__version__)
        }
        assert infos["memory_storage"].storage_schemes == ("memory",)
    finally:
        plugins.reset_plugin_manager()


def test_core_entry_points_of_an_older_install_are_not_registered_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The metadata of an install made when core declared its built-ins as entry points.
    ep = importlib.metadata.EntryPoint("memory_storage", "pyworkflow.storage.memory", "pyworkflow")
    fake_distributions(monkeypatch, FakeDist("pyworkflow", [ep]))
    pm = plugins.make_plugin_manager(load_entrypoints=True)
    assert pm.get_plugin("memory_storage").__name__ == plugins.DEFAULT_PLUGINS["memory_storage"]


def test_another_distribution_cannot_take_a_built_in_name(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = importlib.metadata.EntryPoint("memory_storage", "pyworkflow.storage.memory", "pyworkflow")
    fake_distributions(monkeypatch, FakeDist("pyworkflow-impostor", [ep]))
    with pytest.raises(PluginError, match=r"pyworkflow-impostor 9\.9 .*'memory_storage', the name"):
        plugins.make_plugin_manager(load_entrypoints=True)


def test_same_entry_point_name_in_two_distributions(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = importlib.metadata.EntryPoint("extra", "pyworkflow.storage.memory", "pyworkflow")
    fake_distributions(monkeypatch, FakeDist("one", [ep]), FakeDist("two", [ep]))
    with pytest.raises(PluginError, match="entry point named 'extra': one and two"):
        plugins.make_plugin_manager(load_entrypoints=True)


def test_process_manager_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distributions(monkeypatch)
    plugins.reset_plugin_manager()
    try:
        assert plugins.get_plugin_manager() is plugins.get_plugin_manager()
    finally:
        plugins.reset_plugin_manager()

"""Misspelled hook implementations are refused (issue 12, finding 8).

The plugins here are real installed distributions: a ``*.dist-info`` folder
with an ``entry_points.txt`` and a module, on ``sys.path`` in a temp folder,
found by ``importlib.metadata`` like any ``pip install``-ed plugin.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pyworkflow import plugins
from pyworkflow.errors import PluginError
from pyworkflow.hookspecs import hookimpl

TYPO_MODULE = '''
"""A plugin whose storage hook name has a typo."""
from pyworkflow.hookspecs import hookimpl
from pyworkflow.storage.memory import MemoryStorage


@hookimpl
def pyworkflow_register_storages(register):
    register("typo", lambda url, settings: MemoryStorage(url))
'''

OPTIONAL_MODULE = '''
"""A plugin implementing a hook PyWorkflow may add later, marked optional."""
from pyworkflow.hookspecs import hookimpl


class PlainRepr:
    name = "plain-repr"

    def dumps(self, value):
        return repr(value)

    def loads(self, text):
        return text


@hookimpl(optionalhook=True)
def pyworkflow_some_future_hook():
    return None


@hookimpl
def pyworkflow_register_serializers(register):
    register("plain-repr", PlainRepr())
'''


def install_plugin(site: Path, dist: str, module: str, source: str) -> None:
    """Write an installed distribution ``dist`` declaring entry point ``module`` in ``site``."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[pyworkflow]\n{module} = {module}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on ``sys.path`` to install plugin distributions into."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        if name.startswith(("typo_plugin", "optional_plugin")):
            del sys.modules[name]
    plugins.reset_plugin_manager()


def test_misspelled_hook_in_an_installed_plugin_is_refused(site: Path) -> None:
    install_plugin(site, "pyworkflow-typo", "typo_plugin", TYPO_MODULE)
    with pytest.raises(PluginError) as info:
        plugins.make_plugin_manager()
    message = str(info.value)
    assert "distribution pyworkflow-typo 0.1" in message
    assert "unknown hook 'pyworkflow_register_storages'" in message
    assert "did you mean 'pyworkflow_register_storage'" in message


def test_the_process_wide_manager_fails_and_says_so(site: Path) -> None:
    install_plugin(site, "pyworkflow-typo", "typo_plugin", TYPO_MODULE)
    plugins.reset_plugin_manager()
    with pytest.raises(PluginError, match=r"pyworkflow-typo.*pyworkflow_register_storages"):
        plugins.storage_schemes()


def test_cli_reports_the_misspelled_hook_in_one_line(site: Path) -> None:
    install_plugin(site, "pyworkflow-typo", "typo_plugin", TYPO_MODULE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-m", "pyworkflow", "plugins"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "pyworkflow-typo" in done.stderr and "pyworkflow_register_storages" in done.stderr
    assert "Traceback" not in done.stderr


def test_optional_hooks_and_correct_plugins_still_load(site: Path) -> None:
    install_plugin(site, "pyworkflow-optional", "optional_plugin", OPTIONAL_MODULE)
    plugins.reset_plugin_manager()
    assert "plain-repr" in plugins.serializer_names()
    names = {info.name: info for info in plugins.list_plugins()}
    assert names["optional_plugin"].distribution == "pyworkflow-optional"


class _TypoPlugin:
    @hookimpl
    def pyworkflow_register_executor(self, register: Callable[..., None]) -> None:
        """Misspelled: the hook is ``pyworkflow_register_executors``."""


def test_a_plugin_registered_by_hand_is_checked_too() -> None:
    pm = plugins.make_plugin_manager(load_entrypoints=False)
    pm.register(_TypoPlugin(), name="hand-made")
    plugins.reset_plugin_manager(pm)
    try:
        with pytest.raises(PluginError) as info:
            plugins.executor_names()
    finally:
        plugins.reset_plugin_manager()
    message = str(info.value)
    assert "plugin 'hand-made'" in message and "'pyworkflow_register_executor'" in message
    assert "did you mean 'pyworkflow_register_executors'" in message

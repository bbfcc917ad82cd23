"""The skeleton storage passes the conformance suites and is found through its entry point."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import pyworkflow
from loguru import logger
from pyworkflow import get_result, start, step, workflow
from pyworkflow.errors import ConfigError
from pyworkflow.plugins import list_plugins
from pyworkflow.runtime import get_runtime
from pyworkflow.storage.base import Storage
from pyworkflow.testing import EngineConformance, StorageConformance

from pyworkflow_skeleton.storage import SkeletonStorage

# ----- the two suites every backend runs: this is all a plugin's conformance tests need -----


class TestSkeletonStorage(StorageConformance):
    def make_storage(self, tmp_path: Path) -> Storage:
        # fresh and empty for each test; a real backend points at a new database or key prefix
        return SkeletonStorage(f"skeleton://t{uuid.uuid4().hex[:12]}")


class TestEngineOnSkeleton(EngineConformance):
    def make_storage_url(self, tmp_path: Path) -> str:
        return f"skeleton://t{uuid.uuid4().hex[:12]}"


# ----- the plugin as users meet it: installed, named in config -----


@step()
async def skeleton_double(x: int) -> int:
    return 2 * x


@workflow
async def skeleton_flow(x: int) -> int:
    return await skeleton_double(x) + 1


def test_the_distribution_declares_the_entry_point() -> None:
    (entry,) = [e for e in entry_points(group="pyworkflow") if e.name == "skeleton"]
    assert entry.value == "pyworkflow_skeleton.plugin"
    assert entry.dist is not None and entry.dist.name == "pyworkflow-skeleton"


def test_configure_finds_the_storage_through_the_entry_point() -> None:
    pyworkflow.configure(storage="skeleton://orders")
    run_id = start(skeleton_flow, x=20)
    assert get_result(run_id, timeout=20) == 41
    storage = get_runtime().storage
    assert isinstance(storage, SkeletonStorage) and storage.label == "orders"
    # registered by the plugin manager from the entry point, with its distribution's metadata
    (info,) = [p for p in list_plugins() if p.name == "skeleton"]
    assert (info.distribution, info.version) == ("pyworkflow-skeleton", "0.1.0")
    assert info.storage_schemes == ("skeleton",)


def test_a_fresh_process_finds_the_plugin_without_importing_it(tmp_path: Path) -> None:
    # nothing imports pyworkflow_skeleton here: only the entry point can bring it in
    script = (
        "import sys, pyworkflow\n"
        "from pyworkflow.runtime import get_runtime\n"
        "pyworkflow.configure(storage='skeleton://fresh')\n"
        "storage = get_runtime().storage\n"
        "print(type(storage).__module__, type(storage).__name__, storage.url)\n"
        "pyworkflow.shutdown()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.split() == ["pyworkflow_skeleton.storage", "SkeletonStorage", "skeleton://fresh"]


def test_pyworkflow_plugins_lists_it(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pyworkflow", "plugins", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    (plugin,) = [p for p in json.loads(out) if p["name"] == "skeleton"]
    assert plugin["distribution"] == "pyworkflow-skeleton"
    assert plugin["storage_schemes"] == ["skeleton"]


# ----- its URL and its options -----


def test_options_come_from_the_skeleton_table() -> None:
    pyworkflow.configure(storage="skeleton://", skeleton={"log_writes": True})
    messages: list[str] = []
    logger.enable("pyworkflow_skeleton")  # installed plugins' logs are off, like pyworkflow's
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="DEBUG")
    try:
        run_id = start(skeleton_flow, x=1)
        assert get_result(run_id, timeout=20) == 3
    finally:
        logger.remove(sink)
        logger.disable("pyworkflow_skeleton")
    storage = get_runtime().storage
    assert isinstance(storage, SkeletonStorage) and storage.options.log_writes
    assert "skeleton: run created" in messages
    assert any(m.startswith("skeleton: ") and "appended" in m for m in messages)


def test_options_come_from_the_environment_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYWORKFLOW_SKELETON__LOG_WRITES", "yes")
    pyworkflow.configure(storage="skeleton://")
    storage = get_runtime().storage
    assert isinstance(storage, SkeletonStorage) and storage.options.log_writes


def test_a_bad_option_is_a_config_error_naming_it() -> None:
    pyworkflow.configure(storage="skeleton://", skeleton={"log_writes": "maybe"})
    with pytest.raises(ConfigError, match="log_writes"):
        get_runtime()


def test_an_unknown_option_is_refused() -> None:
    pyworkflow.configure(storage="skeleton://", skeleton={"log_write": True})
    with pytest.raises(ConfigError, match="log_write"):
        get_runtime()


@pytest.mark.parametrize("url", ["skeleton://x/path", "skeleton://x?log_writes=1", "skeleton://#a"])
def test_a_url_it_would_misread_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="config key 'storage'"):
        SkeletonStorage(url)

"""PyWorkflow works from a source checkout that was never installed: built-ins need no metadata."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pyworkflow

SRC = Path(pyworkflow.__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import importlib.metadata
    import site
    import sys

    site.addsitedir(sys.argv[1])  # the dependencies, without any pyworkflow distribution

    import pyworkflow
    from pyworkflow import configure, get_result, plugins, start, step, workflow

    assert pyworkflow.__file__.startswith(sys.argv[2]), pyworkflow.__file__
    try:
        importlib.metadata.distribution("pyworkflow")
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        raise AssertionError("the installed pyworkflow distribution is visible")

    @step
    async def double(x: int) -> int:
        return 2 * x

    @workflow
    async def twice(x: int) -> int:
        return await double(await double(x))

    configure(storage=sys.argv[3])
    print("result", get_result(start(twice, 5), timeout=60))
    print("storage", *plugins.storage_schemes())
    print("executors", *plugins.executor_names())
    print("serializers", *plugins.serializer_names())
    print("plugins", *sorted({info.distribution for info in plugins.list_plugins()}))
    """
)


def _site_without_pyworkflow(farm: Path) -> Path:
    """A folder linking every entry of site-packages except PyWorkflow's own distributions."""
    farm.mkdir()
    for folder in map(Path, site.getsitepackages()):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if "pyworkflow" in entry.name.lower() or (farm / entry.name).exists():
                continue
            (farm / entry.name).symlink_to(entry)
    return farm


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["memory://", "sqlite"])
def test_built_ins_work_from_an_uninstalled_checkout(tmp_path: Path, storage: str) -> None:
    farm = _site_without_pyworkflow(tmp_path / "site")
    url = storage if storage == "memory://" else f"sqlite:///{tmp_path / 'pw.db'}"
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        # -S: no site-packages (so no editable finder and no installed metadata) and -s: no
        # user site; the script adds the dependencies back from the farm.
        [sys.executable, "-S", "-s", "-c", SCRIPT, str(farm), str(SRC), url],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["result"] == "20"
    assert lines["storage"] == "file memory sqlite"
    assert lines["executors"] == "local"
    assert lines["serializers"] == "json pickle"
    assert lines["plugins"] == "pyworkflow"

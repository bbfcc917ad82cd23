"""The ``ray`` executor refuses storages its Ray worker processes cannot share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray_flows as flows

import pyworkflow
from pyworkflow import ConfigError

REFUSED = [
    ("memory://", "memory:// storage lives inside one process"),
    ("file://{tmp}/runs", "file:// storage is not safe for several processes"),
]


@pytest.mark.parametrize(("url", "why"), REFUSED)
def test_starting_a_run_with_ray_on_such_a_storage_is_refused(
    url: str, why: str, tmp_path: Path
) -> None:
    pyworkflow.configure(storage=url.format(tmp=tmp_path), executor="ray")
    with pytest.raises(ConfigError) as info:
        pyworkflow.start(flows.my_workflow, item_id=1)
    message = str(info.value)
    assert "'ray' executor" in message and why in message
    assert "SQLite" in message and "Redis" in message and "PostgreSQL" in message


@pytest.mark.parametrize(("url", "why"), REFUSED)
def test_a_ray_worker_on_such_a_storage_exits_saying_why(
    url: str, why: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env.update(PYWORKFLOW_STORAGE=url.format(tmp=tmp_path), PYWORKFLOW_EXECUTOR="ray")
    out = subprocess.run(
        [sys.executable, "-m", "pyworkflow", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode != 0
    assert why in out.stderr and "'ray' executor" in out.stderr, out.stderr[-2000:]

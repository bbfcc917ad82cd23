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


def _worker_exit(cwd: Path, **env_vars: str) -> subprocess.CompletedProcess[str]:
    """``pyworkflow worker`` with the ray executor and ``env_vars``, run until it exits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env.update(PYWORKFLOW_EXECUTOR="ray", **env_vars)
    return subprocess.run(
        [sys.executable, "-m", "pyworkflow", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


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
    out = _worker_exit(tmp_path, PYWORKFLOW_STORAGE=url.format(tmp=tmp_path))
    assert out.returncode != 0
    assert why in out.stderr and "'ray' executor" in out.stderr, out.stderr[-2000:]


def test_a_ray_worker_with_an_unreachable_ray_address_exits_at_start(tmp_path: Path) -> None:
    """The worker connects to Ray before it claims a run: a wrong address fails at once."""
    from pyworkflow.testing.servers import free_port

    port = free_port()  # nobody listens there
    out = _worker_exit(
        tmp_path,
        PYWORKFLOW_STORAGE=f"sqlite:///{tmp_path / 'runs.db'}",
        PYWORKFLOW_RAY__ADDRESS=f"127.0.0.1:{port}",
    )
    assert out.returncode != 0
    assert f"cannot connect to Ray at '127.0.0.1:{port}'" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def test_an_embedded_ray_worker_with_an_unreachable_address_fails_the_first_call(
    tmp_path: Path,
) -> None:
    from pyworkflow.testing.servers import free_port

    port = free_port()
    pyworkflow.configure(
        storage=f"sqlite:///{tmp_path / 'runs.db'}",
        executor="ray",
        ray={"address": f"127.0.0.1:{port}"},
    )
    with pytest.raises(ConfigError, match=f"cannot connect to Ray at '127.0.0.1:{port}'"):
        pyworkflow.start(flows.my_workflow, item_id=1)

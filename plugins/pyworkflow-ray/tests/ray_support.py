"""Helpers of the Ray tests: ``pyworkflow worker`` processes with the ``ray`` executor."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from ray_cluster import HERE, RAY_ENV, RayCluster, disconnect_from_ray

from pyworkflow import runtime
from pyworkflow.testing.workers import WorkerProcesses

#: fast leases and polls, so recovery from a killed Ray worker takes seconds
FAST = {
    "PYWORKFLOW_LEASE_SECONDS": "2",
    "PYWORKFLOW_POLL_INTERVAL": "0.1",
}


def ray_workers(cluster: RayCluster, tmp_path: Path, storage_url: str) -> WorkerProcesses:
    """``python -m pyworkflow worker`` processes (executor ``ray``) on ``cluster``.

    They import :mod:`ray_flows`; the Ray worker processes import it too (the
    cluster's nodes have this folder on ``PYTHONPATH``, as a deployment has its
    code installed on every node).
    """
    return WorkerProcesses(
        storage_url,
        tmp_path,
        modules="ray_flows",
        pythonpath=HERE,
        settings={
            **FAST,
            **RAY_ENV,
            "PYWORKFLOW_EXECUTOR": "ray",
            "PYWORKFLOW_RAY__ADDRESS": cluster.address,
            # a dispatched step no Ray worker has started is sent again after this
            # (the same attempt); shorter than the default, longer than Ray takes to start
            # a worker process for a new runtime_env on a busy 2-core machine
            "PYWORKFLOW_RAY__DISPATCH_TIMEOUT": "20",
        },
    )


def parse_worker(name: str) -> tuple[str, int]:
    """``ray:<node id>:<pid>`` (a ``step_started`` worker) -> (node id, pid)."""
    kind, node, pid = name.split(":")
    assert kind == "ray", name
    return node, int(pid)


@contextmanager
def ray_driver(
    cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **settings: Any
) -> Iterator[None]:
    """This process as a Ray driver of ``cluster`` (executor ``ray``, SQLite in ``tmp_path``,
    the :mod:`ray_flows` module), with ``settings`` on top; disconnected afterwards."""
    for key, value in RAY_ENV.items():
        monkeypatch.setenv(key, value)
    runtime.reset()
    runtime.configure(
        storage=f"sqlite:///{tmp_path / 'runs.db'}",
        executor="ray",
        modules=["ray_flows"],
        ray={"address": cluster.address},
        **settings,
    )
    try:
        yield
    finally:
        runtime.reset()
        disconnect_from_ray()

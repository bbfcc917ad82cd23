"""Metrics of a Celery prefork worker in prometheus_client's multiprocess mode (issue 19).

The Celery worker's child processes count what they run into ``PROMETHEUS_MULTIPROC_DIR``;
a ``pyworkflow serve --no-worker`` of the same host, with the same directory, starts the runs
(over HTTP: it counts them as started) and its ``/metrics`` merges every process's counts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery_support import FAST, HERE
from pyworkflow_celery.testing import QUEUES, CeleryCluster, RedisServer

from pyworkflow.testing.servers import free_port

if os.environ.get("CI"):  # the dev extra installs it: never skip there
    import prometheus_client  # noqa: F401
else:
    pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow


@pytest.fixture
def metrics_cluster(redis_server: RedisServer, tmp_path: Path) -> Iterator[CeleryCluster]:
    redis_server.client().flushall()
    shared = tmp_path / "prom"
    shared.mkdir()
    cluster = CeleryCluster(
        tmp_path,
        redis_server.url,
        f"sqlite:///{tmp_path / 'pw.db'}",
        modules="celery_metrics_flows",
        pythonpath=HERE,
        settings={
            **FAST,
            "PROMETHEUS_MULTIPROC_DIR": str(shared),
            "PYWORKFLOW_METRICS__ENABLED": "1",
        },
    )
    yield cluster
    cluster.stop_all()


def samples_of(text: str, name: str, *labels: str) -> dict[Any, float]:
    found: dict[Any, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                key = tuple(sample.labels[label] for label in labels)
                found[key[0] if len(key) == 1 else key] = sample.value
    return found


def test_prefork_children_counts_are_merged_by_the_server(
    metrics_cluster: CeleryCluster,
) -> None:
    argv = ["celery", "-A", "pyworkflow_celery.app", "worker", "-Q", QUEUES, "-n", "w1@%h"]
    argv += ["-P", "prefork", "-c", "2", "--without-gossip", "--without-mingle"]
    argv += ["--without-heartbeat", "-l", "INFO"]
    metrics_cluster.command("w1", argv, "ready.")
    port = free_port()
    metrics_cluster.command(
        "serve", ["pyworkflow", "serve", "--no-worker", "--port", str(port)], "serving PyWorkflow"
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:  # uvicorn listens a moment after the start line
        try:
            httpx.get(f"{base}/metrics", timeout=5)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "pyworkflow serve did not listen"
            time.sleep(0.05)

    starts = [("cm_flow", [i]) for i in range(3)] + [("cm_retry", [])]
    run_ids = []
    for name, args in starts:
        response = httpx.post(f"{base}/api/runs", json={"workflow": name, "args": args})
        assert response.status_code == 201, response.text
        run_ids.append(response.json()["run_id"])
    for run_id in run_ids:
        while httpx.get(f"{base}/api/runs/{run_id}").json()["status"] != "completed":
            assert time.monotonic() < deadline + 60, f"run {run_id} did not complete"
            time.sleep(0.05)

    while True:  # a run's end is counted just after its commit
        text = httpx.get(f"{base}/metrics").text
        ended = samples_of(text, "pyworkflow_runs_ended_total", "workflow", "status")
        if sum(ended.values()) >= 4 or time.monotonic() > deadline + 90:
            break
        time.sleep(0.05)
    assert ended == {("cm_flow", "completed"): 3, ("cm_retry", "completed"): 1}
    # counted by the server process: it appended workflow_started
    assert samples_of(text, "pyworkflow_runs_started_total", "workflow") == {
        "cm_flow": 3,
        "cm_retry": 1,
    }
    # counted by the Celery children
    assert samples_of(text, "pyworkflow_step_attempts_total", "step") == {
        "cm_add": 3,
        "cm_flaky": 3,
    }
    assert samples_of(text, "pyworkflow_step_outcomes_total", "step", "outcome") == {
        ("cm_add", "completed"): 3,
        ("cm_flaky", "retrying"): 2,
        ("cm_flaky", "completed"): 1,
    }
    assert samples_of(text, "pyworkflow_step_retries_total", "step") == {"cm_flaky": 2}
    counts = samples_of(text, "pyworkflow_step_duration_seconds_count", "step", "outcome")
    assert counts == {
        ("cm_add", "completed"): 3,
        ("cm_flaky", "retrying"): 2,
        ("cm_flaky", "completed"): 1,
    }
    # the storage gauges come from the server's own scrape
    assert samples_of(text, "pyworkflow_schedule_lag_seconds") == {(): 0.0}
    # the values files of the server and of at least one Celery child (counter_<pid>.db, ...)
    shared = metrics_cluster.tmp_path / "prom"
    pids = {path.stem.rsplit("_", 1)[1] for path in shared.glob("*.db")}
    assert str(metrics_cluster.procs["serve"].pid) in pids
    assert len(pids) >= 2, pids

"""Prometheus metrics (docs/observability.md): exact counts after a known set of runs, scraped
from ``GET /metrics`` of the app and from a real ``pyworkflow worker --metrics-port`` process;
the token guard; off by default; config errors; the storage gauges; multiprocess mode."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from starlette.testclient import TestClient

import pyworkflow
from pyworkflow import EventType, get_events, runtime
from pyworkflow.errors import ConfigError
from pyworkflow.models import utcnow
from pyworkflow.plugins import get_plugin_manager
from pyworkflow.server import create_app

from . import metricsflows
from .conftest import FAST

if os.environ.get("CI"):  # the dev extra installs it: never skip there
    import prometheus_client
else:
    prometheus_client = pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families

from pyworkflow import metrics

HERE = Path(__file__).parent
TOKEN = "metrics-token-0123456789"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

#: What the known set of runs (metricsflows.start_known_runs) counts where it ran.
STARTED = {"mf_ok": 2, "mf_retry": 1, "mf_bad": 2, "mf_slow": 1, "mf_wait": 1}
ENDED = {
    ("mf_ok", "completed"): 2,
    ("mf_retry", "completed"): 1,
    ("mf_bad", "failed"): 2,
    ("mf_slow", "failed"): 1,
    ("mf_wait", "cancelled"): 1,
}
ATTEMPTS = {"mf_add": 2, "mf_flaky": 3, "mf_boom": 2}
OUTCOMES = {
    ("mf_add", "completed"): 2,
    ("mf_flaky", "retrying"): 2,
    ("mf_flaky", "completed"): 1,
    ("mf_boom", "failed"): 2,
}


@pytest.fixture(autouse=True)
def fresh_metrics() -> Iterator[None]:
    """Each test counts from zero; the observer is gone afterwards."""
    metrics.reset_metrics()
    yield
    runtime.reset()
    pm = get_plugin_manager()
    if pm.get_plugin(metrics.PLUGIN_NAME) is not None:
        pm.unregister(name=metrics.PLUGIN_NAME)
    metrics.reset_metrics()


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def series(samples: Samples, name: str, *labels: str) -> dict[Any, float]:
    """The samples of ``name`` keyed by their ``labels`` values (one value: not a tuple)."""
    found: dict[Any, float] = {}
    for (sample, pairs), value in samples.items():
        if sample != name:
            continue
        values = tuple(dict(pairs)[label] for label in labels)
        found[values[0] if len(values) == 1 else values] = value
    return found


def wait_for_scrape(scrape: Callable[[], Samples], ended: int) -> Samples:
    """Scrape until ``ended`` run ends are counted (a run's end is counted after its commit)."""
    deadline = time.monotonic() + 30
    while True:
        samples = scrape()
        counted = series(samples, "pyworkflow_runs_ended_total", "workflow", "status")
        if sum(counted.values()) >= ended:
            return samples
        assert time.monotonic() < deadline, f"never counted {ended} run ends: {samples}"
        time.sleep(0.05)


def suspensions(run_ids: list[str]) -> int:
    return sum(
        1
        for run_id in run_ids
        for e in get_events(run_id)
        if e.type == EventType.WORKFLOW_SUSPENDED
    )


def check_known_counts(samples: Samples, run_ids: list[str], *, started: bool) -> None:
    assert series(samples, "pyworkflow_runs_started_total", "workflow") == (
        STARTED if started else {}
    )
    assert series(samples, "pyworkflow_runs_ended_total", "workflow", "status") == ENDED
    assert series(samples, "pyworkflow_runs_timed_out_total", "workflow") == {"mf_slow": 1}
    assert series(samples, "pyworkflow_step_attempts_total", "step") == ATTEMPTS
    assert series(samples, "pyworkflow_step_outcomes_total", "step", "outcome") == OUTCOMES
    assert series(samples, "pyworkflow_step_retries_total", "step") == {"mf_flaky": 2}
    counts = series(samples, "pyworkflow_step_duration_seconds_count", "step", "outcome")
    assert counts == OUTCOMES
    durations = series(samples, "pyworkflow_step_duration_seconds_sum", "step", "outcome")
    assert all(seconds >= 0 for seconds in durations.values())
    # a step of the flaky kind: each bucket counts the attempts at most that long
    inf = ("mf_flaky", "retrying", "+Inf")
    assert (
        series(samples, "pyworkflow_step_duration_seconds_bucket", "step", "outcome", "le")[inf]
        == 2
    )
    # mf_wait and mf_slow suspend at least once each; every suspension in the logs is counted
    suspended = samples[("pyworkflow_runs_suspended_total", ())]
    assert suspended == suspensions(run_ids) and suspended >= 2


def enable(tmp_path: Path, **settings: Any) -> None:
    runtime.configure(
        storage=f"sqlite:///{tmp_path / 'pw.db'}",
        metrics={"enabled": True},
        **{**FAST, **settings},
    )


# ----- in process: GET /metrics of the app -----


def test_metrics_route_counts_the_known_runs_exactly(tmp_path: Path) -> None:
    enable(tmp_path)
    ids = metricsflows.start_known_runs()
    client = TestClient(create_app())

    def scrape() -> Samples:
        response = client.get("/metrics")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain; version=")
        return parse(response.text)

    samples = wait_for_scrape(scrape, ended=7)
    check_known_counts(samples, ids["all"], started=True)
    # the storage gauges are there too: no queue holds a run, no schedule is due
    assert series(samples, "pyworkflow_queue_waiting_runs", "queue") == {}
    assert samples[("pyworkflow_schedule_lag_seconds", ())] == 0


def test_metrics_route_is_guarded_by_the_api_token(tmp_path: Path) -> None:
    enable(tmp_path)
    client = TestClient(create_app(api_token=TOKEN))
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope-nope-nope-nope"})
    assert wrong.status_code == 401
    good = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert good.status_code == 200
    assert "pyworkflow_schedule_lag_seconds 0.0" in good.text


def test_metrics_are_off_by_default(tmp_path: Path) -> None:
    runtime.configure(storage=f"sqlite:///{tmp_path / 'pw.db'}", **FAST)
    assert pyworkflow.get_result(pyworkflow.start(metricsflows.mf_ok, 1), timeout=30) == 2
    rt = runtime.get_runtime()
    assert get_plugin_manager().get_plugin(metrics.PLUGIN_NAME) is None
    assert rt.journal.observed is False  # an append builds no event list for anyone
    assert metrics._metrics is None  # nothing was made, nothing counted
    assert TestClient(create_app()).get("/metrics").status_code == 404


def test_turning_metrics_off_unregisters_the_observer(tmp_path: Path) -> None:
    enable(tmp_path)
    assert runtime.get_runtime().journal.observed is True
    assert get_plugin_manager().get_plugin(metrics.PLUGIN_NAME) is not None
    runtime.configure(metrics={"enabled": False})
    assert runtime.get_runtime().journal.observed is False
    assert get_plugin_manager().get_plugin(metrics.PLUGIN_NAME) is None


def test_metrics_can_be_turned_on_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYWORKFLOW_METRICS__ENABLED", "yes")
    runtime.configure(storage=f"sqlite:///{tmp_path / 'pw.db'}", **FAST)
    assert pyworkflow.get_result(pyworkflow.start(metricsflows.mf_ok, 1), timeout=30) == 2
    samples = wait_for_scrape(lambda: parse(metrics.render_metrics()[0].decode()), ended=1)
    assert series(samples, "pyworkflow_runs_started_total", "workflow") == {"mf_ok": 1}
    assert series(samples, "pyworkflow_step_attempts_total", "step") == {"mf_add": 1}


@pytest.mark.parametrize(
    ("table", "option", "expected"),
    [
        ({"enabled": "maybe"}, "enabled", "a boolean"),
        ({"enabled": True, "worker_port": 70000}, "worker_port", "a port number"),
        ({"enabled": True, "worker_host": 7}, "worker_host", "a non-empty string"),
        ({"enabled": True, "port": 9100}, "port", "valid options: enabled, worker_host"),
    ],
)
def test_wrong_metrics_options_are_refused_naming_the_key(
    tmp_path: Path, table: dict[str, Any], option: str, expected: str
) -> None:
    runtime.configure(storage=f"sqlite:///{tmp_path / 'pw.db'}", metrics=table)
    with pytest.raises(ConfigError) as info:
        runtime.get_runtime()
    message = str(info.value)
    assert f"{option!r}" in message and "[tool.pyworkflow.metrics]" in message
    assert expected in message


def test_wrong_metrics_option_in_pyproject_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.pyworkflow]\nstorage = "memory://"\n\n[tool.pyworkflow.metrics]\nenabled = 1\n'
    )
    with pytest.raises(ConfigError, match=r"'enabled' of \[tool.pyworkflow.metrics\].*pyproject"):
        runtime.get_runtime()


def test_queue_depth_and_schedule_lag_are_read_at_scrape_time(tmp_path: Path) -> None:
    enable(
        tmp_path,
        embedded_worker=False,
        queues={"mq": {"concurrency": 1}, "idle": {"concurrency": 5}},
    )
    for i in range(3):  # no worker: they wait in their queue
        pyworkflow.start_workflow(metricsflows.mf_ok, (i,), queue="mq")
    schedule = pyworkflow.create_schedule("mf-yearly", metricsflows.mf_wait, "0 0 1 1 *")
    client = TestClient(create_app())
    samples = parse(client.get("/metrics").text)
    assert series(samples, "pyworkflow_queue_waiting_runs", "queue") == {"idle": 0, "mq": 3}
    assert series(samples, "pyworkflow_queue_active_runs", "queue") == {"idle": 0, "mq": 0}
    assert samples[("pyworkflow_schedule_lag_seconds", ())] == 0  # next tick is ahead

    rt = runtime.get_runtime()
    due = utcnow() - timedelta(seconds=90)
    rt.call(rt.storage.put_schedule, attrs.evolve(schedule, next_fire_at=due))
    before = utcnow()
    lag = parse(client.get("/metrics").text)[("pyworkflow_schedule_lag_seconds", ())]
    after = utcnow()
    assert (before - due).total_seconds() <= lag <= (after - due).total_seconds()


# ----- multiprocess mode: refused clearly when it cannot work -----


def test_multiprocess_dir_that_is_missing_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="is not a writable directory"):
        metrics.get_metrics()


def test_multiprocess_dir_set_after_import_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    with pytest.raises(ConfigError, match="set after prometheus_client was imported"):
        metrics.get_metrics()


# ----- a real worker process: pyworkflow worker --metrics-port -----


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_worker(db: Path, port: int, log: Path, **env_extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")]),
        PYWORKFLOW_STORAGE=f"sqlite:///{db}",
        PYWORKFLOW_LEASE_SECONDS="2",
        PYWORKFLOW_POLL_INTERVAL="0.05",
        **env_extra,
    )
    with open(log, "w") as sink:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "pyworkflow", "--log-level", "INFO", "worker"),
                *("-m", "tests.metricsflows", "--metrics-port", str(port)),
            ],
            env=env,
            stderr=sink,
            cwd=HERE.parent,
        )
    deadline = time.monotonic() + 60
    while "worker started" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the worker did not start"
        time.sleep(0.05)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def http_scrape(port: int) -> Callable[[], Samples]:
    def scrape() -> Samples:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert response.status_code == 200
        return parse(response.text)

    return scrape


@pytest.mark.slow
def test_worker_metrics_port_counts_the_known_runs_exactly(tmp_path: Path) -> None:
    db, port, log = tmp_path / "pw.db", free_port(), tmp_path / "worker.log"
    proc = start_worker(db, port, log)
    try:
        assert f"metrics on http://127.0.0.1:{port}/metrics" in log.read_text()
        # this test process is a client: it starts and cancels, the worker runs everything
        runtime.configure(storage=f"sqlite:///{db}", embedded_worker=False, **FAST)
        ids = metricsflows.start_known_runs()
        samples = wait_for_scrape(http_scrape(port), ended=7)
        # runs are counted as started where they were started: here, not in the worker
        check_known_counts(samples, ids["all"], started=False)
    finally:
        stop(proc)
    assert proc.returncode == 0, log.read_text()


@pytest.mark.slow
def test_worker_metrics_port_that_is_taken_is_an_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
        env["PYWORKFLOW_STORAGE"] = f"sqlite:///{tmp_path / 'pw.db'}"
        out = subprocess.run(
            [sys.executable, "-m", "pyworkflow", "worker", "--metrics-port", str(port)],
            env=env,
            capture_output=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert out.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in out.stderr.decode()


@pytest.mark.slow
def test_worker_processes_share_counts_in_multiprocess_mode(tmp_path: Path) -> None:
    """One worker runs 10 runs and stops; a second runs 10 more: its /metrics shows all 20."""
    db, shared = tmp_path / "pw.db", tmp_path / "prom"
    shared.mkdir()
    runtime.configure(storage=f"sqlite:///{db}", embedded_worker=False, **FAST)
    pids = []
    for i in range(2):
        port = free_port()
        proc = start_worker(
            db, port, tmp_path / f"worker-{i}.log", PROMETHEUS_MULTIPROC_DIR=str(shared)
        )
        pids.append(proc.pid)
        try:
            ids = [pyworkflow.start(metricsflows.mf_ok, n) for n in range(10)]
            assert [pyworkflow.get_result(r, timeout=60) for r in ids] == list(range(1, 11))
            total = 10 * (i + 1)
            samples = wait_for_scrape(http_scrape(port), ended=total)
            assert series(samples, "pyworkflow_runs_ended_total", "workflow", "status") == {
                ("mf_ok", "completed"): total
            }
            assert series(samples, "pyworkflow_step_attempts_total", "step") == {"mf_add": total}
            counts = series(samples, "pyworkflow_step_duration_seconds_count", "step", "outcome")
            assert counts == {("mf_add", "completed"): total}
        finally:
            stop(proc)
        assert proc.returncode == 0
    # each process wrote its own files: the second's exposition merged the first's
    written = " ".join(path.name for path in shared.iterdir())
    assert all(str(pid) in written for pid in pids), written

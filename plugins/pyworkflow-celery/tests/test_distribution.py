"""Must-shows 2-4 and 6: parallel steps, worker crash, lost timer message, Redis restart."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import celery_flows as flows
from celery_support import client_settings, make_cluster, start_redis
from pyworkflow_celery.testing import CeleryCluster as Cluster
from pyworkflow_celery.testing import RedisServer, wait_for

from pyworkflow import EventType, RunStatus, get_events, get_result, get_run, runtime, start


def test_gathered_steps_run_at_once_on_two_workers(cluster: Cluster, tmp_path: Path) -> None:
    cluster.worker("w1")
    cluster.worker("w2")
    run_id = start(flows.parallel_flow, str(tmp_path))
    # each step waits for the other to start: they can only finish by overlapping
    assert get_result(run_id, timeout=120) == ["a", "b"]
    events = get_events(run_id)
    started = [e for e in events if e.type == EventType.STEP_STARTED]
    assert len(started) == 2
    hosts = {e.payload["worker"] for e in started}
    assert hosts == {cluster.hostname_of("w1"), cluster.hostname_of("w2")}, hosts
    # both were scheduled by one activation, in one append
    scheduled = [e for e in events if e.type == EventType.STEP_SCHEDULED]
    assert scheduled[1].seq == scheduled[0].seq + 1
    # and the recorded intervals overlap: both started before either completed
    completed = [e for e in events if e.type == EventType.STEP_COMPLETED]
    assert max(e.seq for e in started) < min(e.seq for e in completed)


def test_sigkill_of_the_worker_running_a_step(cluster: Cluster, tmp_path: Path) -> None:
    cluster.worker("w1")
    cluster.worker("w2")
    cluster.beat()
    log = str(tmp_path / "calls.log")
    run_id = start(flows.crash_flow, log)

    def slow_started() -> str | None:
        for e in get_events(run_id):
            if e.type == EventType.STEP_STARTED and e.payload["name"] == "slow_record":
                return str(e.payload["worker"])
        return None

    victim_host = wait_for(slow_started, 60, "the slow step to start")
    wait_for(lambda: "slow" in flows.executions(log), 10, "the slow step body to run")
    victim = next(n for n in ("w1", "w2") if cluster.hostname_of(n) == victim_host)
    cluster.kill(victim)

    assert get_result(run_id, timeout=60) == ["first", "slow done", "last"]
    counts = Counter(flows.executions(log))
    assert counts == {"first": 1, "slow": 2, "last": 1}, counts
    events = get_events(run_id)
    completed = Counter(e.payload["name"] for e in events if e.type == EventType.STEP_COMPLETED)
    assert completed == {"quick": 2, "slow_record": 1}
    slow_starts = [
        (e.payload["attempt"], e.payload["worker"])
        for e in events
        if e.type == EventType.STEP_STARTED and e.payload["name"] == "slow_record"
    ]
    survivor = cluster.hostname_of("w2" if victim == "w1" else "w1")
    assert slow_starts == [(1, victim_host), (2, survivor)]


def test_a_dropped_timer_message_is_recovered_by_the_beat_sweep(
    cluster: Cluster, redis_server: RedisServer, tmp_path: Path
) -> None:
    cluster.worker("w1")
    cluster.worker("w2")
    cluster.beat()
    log = str(tmp_path / "calls.log")
    run_id = start(flows.nap_flow, log, pause="3s")

    def sleeping() -> bool:
        run = get_run(run_id)
        return run.status == RunStatus.SUSPENDED and run.wake_at is not None

    wait_for(sleeping, 30, "the run to sleep")
    # the workers hold the eta message; kill them and drop every queued message
    cluster.kill("w1")
    cluster.kill("w2")
    redis_server.client().flushdb()
    cluster.worker("w3")
    assert get_result(run_id, timeout=60) == "rested"
    assert Counter(flows.executions(log)) == {"before": 1, "after": 1}
    # the activation came from a sweep (its task returns how many it sent)
    assert re.search(
        r"pyworkflow\.sweep\[.*\] succeeded in \S+: [1-9]", cluster.logs["w3"].read_text()
    )


def test_redis_restart_in_the_middle_of_a_run(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis-aof", aof=True)
    cluster = make_cluster(tmp_path, server.url, f"sqlite:///{tmp_path / 'pw.db'}")
    try:
        runtime.configure(**client_settings(server.url, cluster.storage_url))
        cluster.worker("w1")
        cluster.worker("w2")
        cluster.beat()
        log = str(tmp_path / "calls.log")
        run_id = start(flows.nap_flow, log, pause="2s")
        wait_for(lambda: "before" in flows.executions(log), 30, "the first step")
        server.restart(pause=1.0)
        assert get_result(run_id, timeout=90) == "rested"
        assert Counter(flows.executions(log)) == {"before": 1, "after": 1}
        assert (tmp_path / "redis-aof" / "appendonlydir").exists() or any(
            p.name.startswith("appendonly") for p in (tmp_path / "redis-aof").iterdir()
        )
    finally:
        runtime.reset()
        cluster.stop_all()
        server.stop()

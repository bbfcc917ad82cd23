"""Steps as Ray tasks on a real two-node cluster: parallelism, crashes, placement, restarts.

Workers are ``python -m pyworkflow worker`` processes with the ``ray``
executor; this process is a client. Executions are counted through files the
step bodies append to, placement and processes through what ``step_started``
records for dispatched steps (``ray:<node id>:<pid>``) and what the bodies saw.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import ray_flows as flows
from ray_cluster import RayCluster
from ray_support import parse_worker

from pyworkflow import Event, EventType, RunStatus, get_events, get_result, get_run, start
from pyworkflow.testing.servers import wait_for
from pyworkflow.testing.workers import WorkerProcesses


def test_gathered_steps_run_in_two_ray_worker_processes_at_once(
    ray_cluster: RayCluster, workers: WorkerProcesses, tmp_path: Path
) -> None:
    workers.start("w1")
    run_id = start(flows.parallel_flow, str(tmp_path))
    # each step waits for the other to start: they can only finish by overlapping
    result = get_result(run_id, timeout=120)
    assert [label for label, _, _ in result] == ["a", "b"]
    events = get_events(run_id)
    started = {e.correlation_id: e for e in events if e.type == EventType.STEP_STARTED}
    completed = {e.correlation_id: e for e in events if e.type == EventType.STEP_COMPLETED}
    assert len(started) == 2 and started.keys() == completed.keys()
    where = [parse_worker(e.payload["worker"]) for e in started.values()]
    pids = {pid for _, pid in where}
    assert len(pids) == 2, where  # two different Ray worker processes
    assert {node for node, _ in where} <= set(ray_cluster.nodes.values())
    # the processes the bodies ran in are the ones recorded
    assert pids == {int(pid) for _, pid, _ in result}
    # the recorded intervals overlap: each step started before the other completed
    for cid, start_event in started.items():
        for other, end_event in completed.items():
            if other != cid:
                assert start_event.seq < end_event.seq
                assert start_event.timestamp < end_event.timestamp


def _crash_mid_step(
    ray_cluster: RayCluster, workers: WorkerProcesses, tmp_path: Path, flow: Any, slow: str
) -> tuple[list[Event], int, str]:
    """Start ``flow``, SIGKILL the Ray worker running its slow step, check the run recovers.

    Every step ran once but the slow one (twice) and is recorded completed once.
    Returns the run's events, the killed pid and the executions log.
    """
    workers.start("w1")
    log = str(tmp_path / "calls.log")
    pid_file = tmp_path / "slow.pid"
    run_id = start(flow, log, str(pid_file))
    victim = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), 60, "slow step"))
    assert psutil.Process(victim).pid in {p.pid for p in ray_cluster.worker_processes()}
    os.kill(victim, signal.SIGKILL)

    assert get_result(run_id, timeout=90) == ["first", "slow done", "last"]
    assert Counter(flows.executions(log)) == {"first": 1, "slow": 2, "last": 1}
    events = get_events(run_id)
    completed = Counter(e.payload["name"] for e in events if e.type == EventType.STEP_COMPLETED)
    assert completed == {"ray_quick": 2, slow: 1}
    ran = [fields for fields in flows.lines(log) if fields[0] == "slow"]
    assert int(ran[0][2]) == victim and int(ran[1][2]) != victim
    return events, victim, log


def test_sigkill_of_the_ray_worker_running_an_inline_step(
    ray_cluster: RayCluster, workers: WorkerProcesses, tmp_path: Path
) -> None:
    """A lone step without resources runs in its activation's Ray worker: killing that
    process ends the activation; the worker lets the run go and the next activation
    runs the step's next attempt in another process."""
    events, victim, log = _crash_mid_step(
        ray_cluster, workers, tmp_path, flows.crash_flow, "ray_slow_record"
    )
    started = [
        e
        for e in events
        if e.type == EventType.STEP_STARTED and e.payload["name"] == "ray_slow_record"
    ]
    assert [e.payload["attempt"] for e in started] == [1, 2]
    # step_started names the Ray worker process the activation ran in
    assert parse_worker(started[0].payload["worker"])[1] == victim
    assert parse_worker(started[1].payload["worker"])[1] != victim
    ran = [fields for fields in flows.lines(log) if fields[0] == "slow"]
    assert [int(fields[1]) for fields in ran] == [1, 2]
    assert all(int(fields[2]) != os.getpid() for fields in flows.lines(log))


def test_sigkill_of_the_ray_worker_running_a_dispatched_step(
    ray_cluster: RayCluster, workers: WorkerProcesses, tmp_path: Path
) -> None:
    """A step with resources: dispatched; its lease runs out and it is dispatched again."""
    events, victim, _ = _crash_mid_step(
        ray_cluster, workers, tmp_path, flows.crash_flow_dispatched, "ray_slow_record_dispatched"
    )
    slow_starts = [
        parse_worker(e.payload["worker"])
        for e in events
        if e.type == EventType.STEP_STARTED and e.payload["name"] == "ray_slow_record_dispatched"
    ]
    # the killed attempt is recorded as started in the killed process; the re-run elsewhere
    assert slow_starts[0][1] == victim
    assert slow_starts[-1][1] != victim


def test_a_step_asking_for_a_custom_resource_runs_only_on_the_node_that_has_it(
    ray_cluster: RayCluster, workers: WorkerProcesses, tmp_path: Path
) -> None:
    workers.start("w1")
    log = str(tmp_path / "calls.log")
    run_id = start(flows.placement_flow, log)

    *specials, _ = get_result(run_id, timeout=90)
    assert specials == [ray_cluster.nodes["special"]] * 3
    recorded = [
        parse_worker(e.payload["worker"])[0]
        for e in get_events(run_id)
        if e.type == EventType.STEP_STARTED and e.payload["name"] == "ray_on_special"
    ]
    assert recorded == [ray_cluster.nodes["special"]] * 3
    assert [f[3] for f in flows.lines(log) if f[0] == "special"] == [
        ray_cluster.nodes["special"]
    ] * 3


def test_a_run_sleeping_while_every_ray_worker_is_killed_completes(
    ray_cluster: RayCluster, workers: WorkerProcesses, tmp_path: Path
) -> None:
    workers.start("w1")
    log = str(tmp_path / "calls.log")
    run_id = start(flows.nap_flow, log, pause="4s")

    def sleeping() -> bool:
        run = get_run(run_id)
        waiting = EventType.WAIT_CREATED in [e.type for e in get_events(run_id)]
        return waiting and run.status == RunStatus.SUSPENDED

    wait_for(sleeping, 60, "the run to sleep")
    (first,) = [f for f in flows.lines(log) if f[0] == "before"]
    victims = ray_cluster.worker_processes()
    killed = {p.pid for p in victims}
    assert killed, "no Ray worker process to kill"
    for proc in victims:
        proc.send_signal(signal.SIGKILL)
    wait_for(
        lambda: not killed & {p.pid for p in ray_cluster.worker_processes()},
        30,
        "the killed Ray workers to be gone",
    )
    # the process that ran the first step is gone too (killed here, or ended idle by Ray)
    assert int(first[2]) not in {p.pid for p in ray_cluster.worker_processes()}

    assert get_result(run_id, timeout=90) == "rested"
    assert Counter(flows.executions(log)) == {"before": 1, "after": 1}
    (after,) = [f for f in flows.lines(log) if f[0] == "after"]
    assert int(after[2]) not in killed  # a Ray worker process Ray started after the kill


def test_a_step_timeout_cancels_its_ray_task(
    ray_cluster: RayCluster, workers: WorkerProcesses, tmp_path: Path
) -> None:
    workers.start("w1")
    log = str(tmp_path / "calls.log")
    run_id = start(flows.timeout_flow, log)

    assert get_result(run_id, timeout=60) == "gave up: TimeoutError"
    failed = [e for e in get_events(run_id) if e.type == EventType.STEP_FAILED]
    assert len(failed) == 1 and "timed out after 2s" in failed[0].payload["error_message"]
    # the body, in a Ray worker process, was interrupted by the cancel, not left running
    wait_for(lambda: "interrupted" in flows.executions(log), 30, "the Ray task's interruption")
    ran = flows.lines(log)
    assert [f[0] for f in ran] == ["stubborn", "interrupted"]
    assert ran[0][2] == ran[1][2]  # interrupted in the process that ran it
    assert int(ran[0][2]) not in {p.pid for p in workers.procs.values()} | {os.getpid()}
    assert ran[0][3] in ray_cluster.nodes.values()


def test_pyworkflow_logs_are_written_by_the_ray_worker_that_ran_the_activation(
    ray_cluster: RayCluster, workers: WorkerProcesses, tmp_path: Path
) -> None:
    """Ray workers log PyWorkflow's own lines to their stderr (Ray's log files), at the
    sending worker's ``log_level`` (here DEBUG; WARNING when unset), as workflow code's."""
    workers.start("w1", PYWORKFLOW_LOG_LEVEL="DEBUG")
    marker = f"probe-{tmp_path.name}"
    run_id = start(flows.logging_flow, marker)
    assert get_result(run_id, timeout=90) == marker

    def logged(*parts: str) -> list[Path]:
        """The Ray worker log files with a line holding every one of ``parts``."""
        return [
            path
            for path in ray_cluster.temp_dir.rglob("worker-*.err")
            if any(
                all(part in line for part in parts)
                for line in path.read_text(errors="replace").splitlines()
            )
        ]

    # the workflow's own line, once (not repeated by a replay, not lost)
    found = wait_for(lambda: logged(f"workflow says {marker}"), 30, "the workflow's line")
    assert len(found) == 1
    # and the library's (INFO, allowed by the forwarded level), bound with the run id, in
    # the same Ray worker process
    ended = wait_for(
        lambda: logged("pyworkflow.engine", "workflow completed", f"run_id={run_id}"),
        30,
        "the library's line",
    )
    assert found == ended
    assert f"workflow says {marker}" not in workers.log_text()  # not the claiming worker

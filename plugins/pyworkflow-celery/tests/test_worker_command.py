"""Issue 12, finding 10: the brief's worker command consumes every PyWorkflow queue.

``celery -A pyworkflow.celery.app worker --loglevel=info`` (no ``-Q``) must
run activations and step bodies alike; ``-Q`` still splits them over workers.
"""

from __future__ import annotations

import socket

import celery_flows as flows
from pyworkflow_celery.testing import CeleryCluster as Cluster

from pyworkflow import EventType, get_events, get_result, start

#: The seed README's worker command, word for word.
BRIEF_WORKER = "celery -A pyworkflow.celery.app worker --loglevel=info"


def test_the_briefs_worker_command_runs_steps(cluster: Cluster) -> None:
    cluster.command("worker", BRIEF_WORKER.split(), "ready.")

    run_id = start(flows.my_workflow, item_id=123, pause="0.5s")

    assert get_result(run_id, timeout=60) == "Processed 123"
    events = get_events(run_id)
    step_workers = {e.payload["worker"] for e in events if e.type == EventType.STEP_STARTED}
    # the step body ran on that worker (celery's default node name), not in this process
    assert step_workers == {f"celery@{socket.gethostname()}"}, step_workers
    assert [e.type for e in events].count(EventType.WAIT_COMPLETED) == 1
    banner = cluster.logs["worker"].read_text()
    for queue in ("pyworkflow.workflows", "pyworkflow.steps"):
        assert f".> {queue} exchange={queue}" in banner, banner[-3000:]


def test_queues_can_still_be_split_over_workers_with_q(cluster: Cluster) -> None:
    cluster.worker("flows", queues="pyworkflow.workflows")
    cluster.worker("steps", queues="pyworkflow.steps")

    run_id = start(flows.my_workflow, item_id=5, pause="0.5s")

    assert get_result(run_id, timeout=60) == "Processed 5"
    step_workers = {
        e.payload["worker"] for e in get_events(run_id) if e.type == EventType.STEP_STARTED
    }
    assert step_workers == {cluster.hostname_of("steps")}, step_workers
    flows_log = cluster.logs["flows"].read_text()
    steps_log = cluster.logs["steps"].read_text()
    assert "pyworkflow.activate[" in flows_log and "pyworkflow.step[" not in flows_log
    assert "pyworkflow.step[" in steps_log and "pyworkflow.activate[" not in steps_log

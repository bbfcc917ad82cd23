"""Issue 12, finding 10: the brief's worker command consumes every PyWorkflow queue.

``celery -A pyworkflow.celery.app worker --loglevel=info`` (no ``-Q``) must
run activations and step bodies alike; ``-Q`` still splits them over workers.
Issue 13: a lone step runs in its activation, unless ``inline_steps`` is off.
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


def test_a_lone_step_runs_in_its_activation_unless_inline_steps_is_off(cluster: Cluster) -> None:
    cluster.worker("both")
    inline = start(flows.my_workflow, item_id=1, pause="0.1s")
    assert get_result(inline, timeout=60) == "Processed 1"
    events = get_events(inline)
    assert EventType.STEP_SCHEDULED not in [e.type for e in events]
    (started,) = [e for e in events if e.type == EventType.STEP_STARTED]
    assert started.payload["worker"] == cluster.hostname_of("both")
    assert "dispatched" not in started.payload
    assert "pyworkflow.step[" not in cluster.logs["both"].read_text()
    cluster.stop_all()

    cluster.worker("off", env={"PYWORKFLOW_CELERY__INLINE_STEPS": "false"})
    dispatched = start(flows.my_workflow, item_id=2, pause="0.1s")
    assert get_result(dispatched, timeout=60) == "Processed 2"
    events = get_events(dispatched)
    assert [e.type for e in events].count(EventType.STEP_SCHEDULED) == 1
    (started,) = [e for e in events if e.type == EventType.STEP_STARTED]
    assert started.payload["worker"] == cluster.hostname_of("off")
    assert started.payload["dispatched"] is True
    assert "pyworkflow.step[" in cluster.logs["off"].read_text()

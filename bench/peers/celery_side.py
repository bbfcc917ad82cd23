"""The Celery row of ``bench/peers.py``: PyWorkflow's Celery executor vs plain chains.

Reuses ``bench/celery_bench_flows.py`` (the same 5 ``value + 1`` steps as a
PyWorkflow workflow on the ``celery`` executor and as a plain Celery ``chain``)
and the process helpers of ``pyworkflow_celery.testing``: its own
``redis-server`` on 127.0.0.1 (free port) and its own worker processes, all
stopped on exit, Ctrl-C or SIGTERM. Both sides get ``workers`` worker
processes of ``concurrency`` threads on the same broker (PyWorkflow on Redis
db 0, the baseline on db 1). Prints ``RESULT <json>`` with runs/s of each::

    python bench/peers/celery_side.py '{"runs": 500, "workers": 2, "concurrency": 4}'
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent


def _interrupt(signum: int, frame: Any) -> None:
    # Once: a Ctrl-C reaches this process and bench/peers.py's SIGTERM follows it;
    # the second signal must not interrupt the cleanup the first one started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def measure(runs: int, workers: int = 2, concurrency: int = 4) -> dict[str, float]:
    """Runs/s of ``runs`` 5-step workflows and of ``runs`` plain 5-task chains."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import celery_bench_flows as flows
    from celery import chain
    from pyworkflow_celery.testing import CeleryCluster, RedisServer, wait_for

    import pyworkflow
    from pyworkflow import RunStatus, get_run, runtime, start

    with tempfile.TemporaryDirectory(prefix="pw-peers-celery-") as tmp:
        tmp_path = Path(tmp)
        server = RedisServer(tmp_path / "redis")
        storage = f"sqlite:///{tmp_path / 'pw.db'}"
        cluster = CeleryCluster(
            tmp_path, server.url, storage, modules="celery_bench_flows", pythonpath=BENCH
        )
        try:
            # ----- the baseline: plain Celery chains of 5 tasks (warm-up, then timed) -----
            baseline_url = server.url[:-1] + "1"
            flows.baseline_app.conf.broker_url = baseline_url
            flows.baseline_app.conf.result_backend = baseline_url
            cluster.broker_url = baseline_url
            for i in range(workers):
                cluster.worker(
                    f"base{i}",
                    concurrency=concurrency,
                    app="celery_bench_flows:baseline_app",
                    queues="celery",
                    env={"BENCH_BROKER_URL": baseline_url},
                )

            def chains(count: int) -> list[int]:
                sent = [
                    chain(flows.add_one.s(i), *[flows.add_one.s() for _ in range(4)]).apply_async()
                    for i in range(count)
                ]
                return [c.get(timeout=600) for c in sent]

            chains(min(runs, 20))
            began = time.perf_counter()
            assert chains(runs) == [i + 5 for i in range(runs)], "wrong baseline results"
            base_time = time.perf_counter() - began
            cluster.stop_all()

            # ----- PyWorkflow on the Celery executor, same broker, same worker shape -----
            cluster.broker_url = server.url
            for i in range(workers):
                cluster.worker(f"pw{i}", concurrency=concurrency)
            runtime.configure(storage=storage, executor="celery", celery={"broker_url": server.url})

            def workflows(count: int) -> list[int]:
                run_ids = [start(flows.bench_five_steps, i) for i in range(count)]
                pending = list(run_ids)

                def all_done() -> bool:
                    while pending and get_run(pending[-1]).status == RunStatus.COMPLETED:
                        pending.pop()
                    if not pending:
                        return True
                    time.sleep(0.05)  # keep the poll light: it reads the same database
                    return False

                wait_for(all_done, 600, "all PyWorkflow runs to complete")
                return [pyworkflow.get_result(r) for r in run_ids]

            workflows(min(runs, 20))
            began = time.perf_counter()
            assert workflows(runs) == [i + 5 for i in range(runs)], "wrong results"
            pw_time = time.perf_counter() - began
        finally:
            runtime.reset()
            cluster.stop_all()
            server.stop()
    return {"pw_rps": runs / pw_time, "chain_rps": runs / base_time}


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    result = measure(**json.loads(argv[1]))
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv)

"""Throughput of the Celery executor against a plain Celery ``chain``, in the same run.

Run: ``python bench/celery_throughput.py [--runs 500] [--workers 2] [--concurrency 4]``.
Starts its own ``redis-server`` (127.0.0.1, free port) and Celery worker
processes, then:

1. starts ``--runs`` PyWorkflow runs of a 5-step workflow (``executor = "celery"``,
   SQLite storage shared by the workers) and waits until all complete;
2. sends the same number of plain Celery ``chain``s of 5 tasks to workers of
   the same shape and waits for all results.

Prints runs/s and steps/s of both and PyWorkflow's throughput as a fraction of
the plain chain's. With ``--dispatch-all`` it also measures PyWorkflow with
``inline_steps = false`` (every step body sent to the step queue, as before
lone steps ran inline), on fresh storage, in the same run.
Needs ``pip install ./plugins/pyworkflow-celery``.

Figures (2 workers x 4 threads, the 2-core development machine, other jobs running):
before lone steps ran inline, 13.2 runs/s against 52.2 for the chains (0.25x,
300 runs); after, in one run of 500 (``--dispatch-all``): inline 104.9 runs/s,
every step dispatched 14.8, plain chains 58.2 (1.80x and 0.25x); over several
runs the inline ratio was 1.2x-1.8x, the chains' figure moving most. Per step, dispatched: an
activation message, a step message and seven fsync'd writes (claim, append
``step_scheduled`` + suspension, queued lease, the worker's lease,
``step_started``, the outcome, lease release); inline: one write (the outcome
and the next ``step_started`` in one append), no message.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--dispatch-all",
        action="store_true",
        help="also measure with inline_steps = false (every step dispatched)",
    )
    args = parser.parse_args()

    import celery_bench_flows as flows
    from celery import chain
    from pyworkflow_celery.testing import CeleryCluster, RedisServer, wait_for

    import pyworkflow
    from pyworkflow import RunStatus, get_run, runtime, start

    with tempfile.TemporaryDirectory(prefix="pw-celery-bench-") as tmp:
        tmp_path = Path(tmp)
        server = RedisServer(tmp_path / "redis")
        storage = f"sqlite:///{tmp_path / 'pw.db'}"
        cluster = CeleryCluster(
            tmp_path, server.url, storage, modules="celery_bench_flows", pythonpath=HERE
        )

        def measure_pyworkflow(label: str, inline_steps: bool) -> float:
            """Seconds for ``--runs`` runs on fresh storage and fresh workers."""
            cluster.storage_url = f"sqlite:///{tmp_path / f'pw-{label}.db'}"
            cluster.settings["PYWORKFLOW_CELERY__INLINE_STEPS"] = str(inline_steps).lower()
            for i in range(args.workers):
                cluster.worker(f"{label}{i}", concurrency=args.concurrency)
            runtime.configure(
                storage=cluster.storage_url, executor="celery", celery={"broker_url": server.url}
            )
            began = time.perf_counter()
            run_ids = [start(flows.bench_five_steps, i) for i in range(args.runs)]

            pending = list(run_ids)

            def all_done() -> bool:
                while pending and get_run(pending[-1]).status == RunStatus.COMPLETED:
                    pending.pop()
                if not pending:
                    return True
                time.sleep(0.2)  # keep the poll light: it reads the same database
                return False

            wait_for(all_done, 600, "all PyWorkflow runs to complete")
            elapsed = time.perf_counter() - began
            results = [pyworkflow.get_result(r) for r in run_ids]
            assert results == [i + 5 for i in range(args.runs)], "wrong results"
            runtime.reset()
            cluster.stop_all()
            return elapsed

        try:
            # ----- PyWorkflow on Celery -----
            pw_time = measure_pyworkflow("pw", inline_steps=True)
            all_time = measure_pyworkflow("all", inline_steps=False) if args.dispatch_all else None

            # ----- the baseline: a plain Celery chain of 5 tasks -----
            baseline_url = server.url[:-1] + "1"
            flows.baseline_app.conf.broker_url = baseline_url
            flows.baseline_app.conf.result_backend = baseline_url
            cluster.broker_url = baseline_url
            for i in range(args.workers):
                cluster.worker(
                    f"base{i}",
                    concurrency=args.concurrency,
                    app="celery_bench_flows:baseline_app",
                    queues="celery",
                    env={"BENCH_BROKER_URL": baseline_url},
                )
            began = time.perf_counter()
            chains = [
                chain(flows.add_one.s(i), *[flows.add_one.s() for _ in range(4)]).apply_async()
                for i in range(args.runs)
            ]
            base_results = [c.get(timeout=600) for c in chains]
            base_time = time.perf_counter() - began
            assert base_results == [i + 5 for i in range(args.runs)], "wrong baseline results"
        finally:
            runtime.reset()
            cluster.stop_all()
            server.stop()

    steps = args.runs * 5
    print(f"workload: {args.runs} runs x 5 steps, {args.workers} workers x {args.concurrency}")
    print(
        f"pyworkflow (celery executor, SQLite storage): {pw_time:7.2f} s  "
        f"{args.runs / pw_time:8.1f} runs/s  {steps / pw_time:8.1f} steps/s"
    )
    print(
        f"plain celery chain of 5 tasks:                {base_time:7.2f} s  "
        f"{args.runs / base_time:8.1f} runs/s  {steps / base_time:8.1f} steps/s"
    )
    if all_time is not None:
        print(
            f"pyworkflow, every step dispatched:           {all_time:7.2f} s  "
            f"{args.runs / all_time:8.1f} runs/s  {steps / all_time:8.1f} steps/s"
        )
        print(f"every step dispatched / plain chain: {base_time / all_time:.2f}")
    print(f"pyworkflow throughput / plain chain: {base_time / pw_time:.2f}")


if __name__ == "__main__":
    main()

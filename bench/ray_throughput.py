"""Throughput of the Ray executor against plain chains of 5 Ray tasks, in the same run.

Run: ``python bench/ray_throughput.py [--runs 100] [--cpus 2]``. Starts one local Ray
(``ray.init`` in this process, ``--cpus`` CPUs, its files in a temp dir), then on it:

1. starts ``--runs`` PyWorkflow runs of a 5-step workflow (``executor = "ray"``,
   SQLite storage in the temp dir, this process's embedded worker activating)
   and waits until all complete;
2. submits the same number of plain chains of 5 Ray tasks (each task gets the
   previous one's ObjectRef) and waits for all results.

Prints runs/s and steps/s of both and PyWorkflow's throughput as a fraction of
the plain chains'. Needs ``pip install ./plugins/pyworkflow-ray``.

Figures (the 2-core development machine, other jobs running, ``--runs 50``/``100``):
PyWorkflow 16-30 runs/s against 39-105 for the plain chains, 0.24-0.42x over five
runs; before a step's finished task woke the worker (it waited for the next poll), 0.24x.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pw-ray-bench-") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "ray").mkdir()
        os.environ.setdefault("RAY_TMPDIR", str(tmp_path / "ray"))
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # the Ray workers this process starts import the workload from here
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(HERE), os.environ.get("PYTHONPATH")])
        )
        import ray

        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)

        import ray_bench_flows as flows

        import pyworkflow
        from pyworkflow import RunStatus, get_run, runtime, start

        try:
            # warm both paths (worker processes, imports) before timing
            ray.get(flows.add_one.remote(0))
            runtime.configure(
                storage=f"sqlite:///{tmp_path / 'pw.db'}",
                executor="ray",
                modules=["ray_bench_flows"],
                ray={"address": ""},  # already connected: the same cluster
            )
            pyworkflow.get_result(start(flows.bench_ray_five_steps, 0), timeout=300)

            # ----- PyWorkflow on Ray -----
            began = time.perf_counter()
            run_ids = [start(flows.bench_ray_five_steps, i) for i in range(args.runs)]
            pending = list(run_ids)
            deadline = time.monotonic() + 900
            while pending:
                while pending and get_run(pending[-1]).status == RunStatus.COMPLETED:
                    pending.pop()
                if pending:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{len(pending)} runs still not complete")
                    time.sleep(0.1)
            pw_time = time.perf_counter() - began
            results = [pyworkflow.get_result(r) for r in run_ids]
            assert results == [i + 5 for i in range(args.runs)], "wrong results"

            # ----- the baseline: plain chains of 5 Ray tasks -----
            began = time.perf_counter()
            chains = []
            for i in range(args.runs):
                ref = flows.add_one.remote(i)
                for _ in range(4):
                    ref = flows.add_one.remote(ref)
                chains.append(ref)
            base_results = ray.get(chains, timeout=900)
            base_time = time.perf_counter() - began
            assert base_results == [i + 5 for i in range(args.runs)], "wrong baseline results"
        finally:
            runtime.reset()
            ray.shutdown()

    steps = args.runs * 5
    print(f"workload: {args.runs} runs x 5 steps, one local Ray with {args.cpus} CPUs")
    print(
        f"pyworkflow (ray executor, SQLite storage): {pw_time:7.2f} s  "
        f"{args.runs / pw_time:8.1f} runs/s  {steps / pw_time:8.1f} steps/s"
    )
    print(
        f"plain chains of 5 Ray tasks:               {base_time:7.2f} s  "
        f"{args.runs / base_time:8.1f} runs/s  {steps / base_time:8.1f} steps/s"
    )
    print(f"pyworkflow throughput / plain chains: {base_time / pw_time:.2f}")


if __name__ == "__main__":
    main()

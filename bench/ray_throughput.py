"""Throughput of the Ray executor against plain chains of 5 Ray tasks, in the same run.

Run: ``python bench/ray_throughput.py [--runs 100] [--rounds 3] [--cpus 2]
[--synchronous FULL|NORMAL]``. Starts one local Ray (``ray.init`` in this process,
``--cpus`` CPUs, its files in a temp dir), warms both paths, then alternates
``--rounds`` rounds of:

1. ``--runs`` PyWorkflow runs of a 5-step workflow (``executor = "ray"``, SQLite
   storage in the temp dir, this process's embedded worker sending the activations
   to Ray), started
   at once, until all complete;
2. the same number of plain chains of 5 Ray tasks (each task gets the previous
   one's ObjectRef), submitted at once, until all results are in. The tasks get
   the executor's ``runtime_env``: both paths use the same pool of Ray workers.

Prints runs/s and steps/s of both (medians over the rounds), each round's ratio,
and PyWorkflow's throughput as a fraction of the plain chains'. Needs
``pip install ./plugins/pyworkflow-ray``. Figures: docs/ray.md, "Measured".
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))


def _pyworkflow_round(runs: int, offset: int) -> float:
    """Seconds for ``runs`` runs of the 5-step workflow, started at once, to complete."""
    import ray_bench_flows as flows

    import pyworkflow
    from pyworkflow import RunStatus, get_run, start

    began = time.perf_counter()
    run_ids = [start(flows.bench_ray_five_steps, offset + i) for i in range(runs)]
    pending = list(run_ids)
    deadline = time.monotonic() + 900
    while pending:
        while pending and get_run(pending[-1]).status == RunStatus.COMPLETED:
            pending.pop()
        if pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} runs still not complete")
            time.sleep(0.02)
    took = time.perf_counter() - began
    results = [pyworkflow.get_result(r) for r in run_ids]
    assert results == [offset + i + 5 for i in range(runs)], "wrong results"
    return took


def _chains_round(add_one: Any, runs: int, offset: int) -> float:
    """Seconds for ``runs`` plain chains of 5 Ray tasks, submitted at once, to complete."""
    import ray

    began = time.perf_counter()
    chains = []
    for i in range(runs):
        ref = add_one.remote(offset + i)
        for _ in range(4):
            ref = add_one.remote(ref)
        chains.append(ref)
    results = ray.get(chains, timeout=900)
    took = time.perf_counter() - began
    assert results == [offset + i + 5 for i in range(runs)], "wrong baseline results"
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument(
        "--synchronous",
        choices=["FULL", "NORMAL"],
        default="FULL",
        help="SQLite synchronous setting (FULL: an fsync per commit, the default)",
    )
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

        from pyworkflow import runtime

        pw_times: list[float] = []
        base_times: list[float] = []
        try:
            runtime.configure(
                storage=f"sqlite:///{tmp_path / 'pw.db'}",
                executor="ray",
                modules=["ray_bench_flows"],
                ray={"address": ""},  # already connected: the same cluster
                sqlite_synchronous=args.synchronous,
            )
            # the baseline's tasks get the executor's runtime_env: both run in the
            # same pool of Ray worker processes (a pool per runtime_env), so neither
            # pays for Ray starting workers while the other is timed
            env = runtime.get_runtime().executor.runtime_env  # type: ignore[attr-defined]
            add_one = flows.add_one.options(runtime_env=env)
            # warm both paths (worker processes, imports) before timing
            _pyworkflow_round(max(10, args.runs // 4), 0)
            _chains_round(add_one, max(10, args.runs // 4), 0)
            for n in range(args.rounds):  # alternate, so drift hits both alike
                pw_times.append(_pyworkflow_round(args.runs, n * args.runs))
                base_times.append(_chains_round(add_one, args.runs, n * args.runs))
        finally:
            runtime.reset()
            ray.shutdown()

    pw_time, base_time = statistics.median(pw_times), statistics.median(base_times)
    steps = args.runs * 5
    print(
        f"workload: {args.runs} runs x 5 steps, one local Ray with {args.cpus} CPUs, "
        f"median of {args.rounds} alternating rounds"
    )
    print(
        f"pyworkflow (ray executor, SQLite {args.synchronous:6}): {pw_time:7.2f} s  "
        f"{args.runs / pw_time:8.1f} runs/s  {steps / pw_time:8.1f} steps/s"
    )
    print(
        f"plain chains of 5 Ray tasks:                 {base_time:7.2f} s  "
        f"{args.runs / base_time:8.1f} runs/s  {steps / base_time:8.1f} steps/s"
    )
    print(
        "per round (pyworkflow / chains): "
        + ", ".join(f"{b / p:.2f}" for p, b in zip(pw_times, base_times, strict=True))
    )
    print(f"pyworkflow throughput / plain chains: {base_time / pw_time:.2f}")


if __name__ == "__main__":
    main()

"""PyWorkflow's side of ``bench/peers.py``: the workloads, timed in this process.

Importable without DBOS or Celery (``tests/test_bench_peers.py`` runs it on tiny
sizes). As a script it runs one group of workloads and prints one line
``RESULT <json>``::

    python bench/peers/pw_side.py '{"group": "sequential", "storage": "sqlite:///x.db"}'

Every figure is the best of ``repeats`` measurements, each after a warm-up,
exactly as ``dbos_side.py`` does for DBOS.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import pyworkflow  # noqa: E402
from pyworkflow import runtime, step, workflow  # noqa: E402


@step()
async def add_one_step(value: int) -> int:
    """The step body shared with the DBOS side: ``value + 1``."""
    return value + 1


@workflow
async def chain_of_steps(n: int) -> int:
    """``n`` sequential steps."""
    value = 0
    for _ in range(n):
        value = await add_one_step(value)
    return value


@workflow
async def empty_run() -> int:
    """No step at all: the cost of a run's start and finish."""
    return 0


def best(repeats: int, measure: Callable[[], float]) -> float:
    """The lowest of ``repeats`` measurements (lower is better for all of ours)."""
    return min(measure() for _ in range(max(1, repeats)))


def run_to_result(wf: Any, *args: Any) -> Any:
    """``start()`` then ``get_result()``, the public synchronous API."""
    return pyworkflow.get_result(pyworkflow.start(wf, *args), timeout=600)


def sequential(storage: str, steps: int, workflows: int, repeats: int) -> dict[str, float]:
    """The three sequential workloads on one storage.

    Returns ``steps_us`` (µs per step of one ``steps``-step workflow, start to
    result), ``ten_step_wps`` (``workflows`` 10-step workflows one after another,
    workflows/s) and ``empty_ms`` (ms per empty workflow, start to result).
    """
    runtime.reset()
    pyworkflow.configure(storage=storage)
    try:
        for _ in range(3):  # warm-up: runtime, storage, schema, code paths
            run_to_result(chain_of_steps, 10)
            run_to_result(empty_run)

        def one_long() -> float:
            began = time.perf_counter()
            assert run_to_result(chain_of_steps, steps) == steps
            return (time.perf_counter() - began) / steps * 1e6

        def ten_step_batch() -> float:
            began = time.perf_counter()
            for _ in range(workflows):
                assert run_to_result(chain_of_steps, 10) == 10
            return (time.perf_counter() - began) / workflows  # seconds per workflow

        def empties() -> float:
            began = time.perf_counter()
            for _ in range(workflows):
                assert run_to_result(empty_run) == 0
            return (time.perf_counter() - began) / workflows * 1e3

        return {
            "steps_us": best(repeats, one_long),
            "ten_step_wps": 1.0 / best(repeats, ten_step_batch),
            "empty_ms": best(repeats, empties),
        }
    finally:
        runtime.reset()


def _step_overhead() -> Any:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import step_overhead

    return step_overhead


def per_step_sqlite(directory: str, steps: int, repeats: int) -> dict[str, float]:
    """Per-step cost on SQLite against one raw INSERT+COMMIT on the same file.

    Reuses ``bench/step_overhead.py`` (engine time, created_at to completed_at).
    For each of FULL and NORMAL: µs per step, commits per step, and the raw
    INSERT+COMMIT of a small row, measured on the workflow's own database file
    right after the workflow (a side table), same journal mode and synchronous.
    Also memory storage's µs per step and a bare ``await`` of the step body.
    """
    so = _step_overhead()
    out: dict[str, float] = {"bare_us": so.bare_await_us(steps)}
    for sync in ("FULL", "NORMAL"):
        path = Path(directory) / f"per-step-{sync}.db"
        url = f"sqlite:///{path}"
        per_step = raw = float("inf")
        commits: int | None = None
        for _ in range(max(1, repeats)):  # each workflow, then at once its raw commits
            measured, counted = so.run_workflow(url, steps, sqlite_synchronous=sync)
            if measured < per_step:
                per_step, commits = measured, counted
            raw = min(raw, so.raw_commit_us(path, sync))
        key = sync.lower()
        out[f"{key}_us"] = per_step
        out[f"{key}_commits_per_step"] = (commits / steps) if commits is not None else float("nan")
        out[f"{key}_raw_us"] = raw
    out["memory_us"] = min(so.run_workflow("memory://", steps)[0] for _ in range(max(1, repeats)))
    return out


def one_workflow_steps(storage: str, steps: int, repeats: int) -> dict[str, float]:
    """µs per step of one ``steps``-step workflow, start to result (PostgreSQL row)."""
    runtime.reset()
    pyworkflow.configure(storage=storage)
    try:
        for _ in range(3):
            run_to_result(chain_of_steps, 10)

        def one_long() -> float:
            began = time.perf_counter()
            assert run_to_result(chain_of_steps, steps) == steps
            return (time.perf_counter() - began) / steps * 1e6

        return {"steps_us": best(repeats, one_long)}
    finally:
        runtime.reset()


# Cold start: the same definitions as bench/cold_start.py (default configuration: SQLite
# file storage in a new project folder, local executor), with a timeout on every process.
COLD_FLOW = """
import json, time
from pyworkflow import get_result, start, step, workflow

@step
async def add(a: int, b: int) -> int:
    return a + b

@workflow
async def one(a: int) -> int:
    return await add(a, 1)

t = time.perf_counter()
result = get_result(start(one, 1))
inside = time.perf_counter() - t
assert result == 2, result
print(json.dumps({"result_at": time.time(), "inside": inside}))
"""


def cold(directory: str, runs: int) -> dict[str, float]:
    """PyWorkflow's cold start: import, first 1-step workflow, ``pyworkflow --help``."""
    from cold_start_helpers import cli_argv, cold_figures

    return cold_figures(directory, runs, "pyworkflow", COLD_FLOW, cli_argv("pyworkflow"))


GROUPS: dict[str, Callable[..., dict[str, float]]] = {
    "cold": cold,
    "sequential": sequential,
    "per_step_sqlite": per_step_sqlite,
    "one_workflow_steps": one_workflow_steps,
}


def main(argv: list[str]) -> None:
    """Run the group named in the JSON argument and print ``RESULT <json>``."""
    spec = json.loads(argv[1])
    group = GROUPS[spec.pop("group")]
    result = group(**spec)
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv)

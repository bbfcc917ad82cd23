"""DBOS's side of ``bench/peers.py``: the same workloads as ``pw_side.py``, on DBOS.

Run in the peers venv (``bench/peers/requirements.txt``); one group per
process (DBOS is a process-wide singleton), printing ``RESULT <json>``::

    python bench/peers/dbos_side.py '{"group": "sequential", "url": "sqlite:///x.sqlite"}'

DBOS runs with its defaults except the system database URL. ``wal: true``
turns the SQLite file into WAL mode before DBOS opens it (``journal_mode`` is
persistent in the file; DBOS 3.4's ``SQLiteSystemDatabase`` sets only
``isolation_level=IMMEDIATE``, ``busy_timeout`` and ``foreign_keys`` on its
connections, so ``synchronous`` stays SQLite's default FULL, like ours).
The step and workflow bodies are those of ``pw_side.py``; DBOS's primary
(synchronous) API runs them; every figure is the best of ``repeats``, each
after a warm-up.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSConfig


@DBOS.step()
def inc(value: int) -> int:
    return value + 1


@DBOS.workflow()
def many_steps(n: int) -> int:
    value = 0
    for _ in range(n):
        value = inc(value)
    return value


@DBOS.workflow()
def empty() -> int:
    return 0


def best(repeats: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(max(1, repeats)))


def run_to_result(wf: Any, *args: Any) -> Any:
    """``DBOS.start_workflow`` then ``handle.get_result()``."""
    return DBOS.start_workflow(wf, *args).get_result()


def launch(url: str, wal: bool) -> None:
    if wal:
        if not url.startswith("sqlite:///"):
            raise ValueError("wal applies to a SQLite URL")
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        conn.close()
        if mode.lower() != "wal":
            raise RuntimeError(f"could not set WAL: {mode}")
    config: DBOSConfig = {"name": "peers-bench", "system_database_url": url}
    DBOS(config=config)
    DBOS.launch()


def sequential(
    url: str, steps: int, workflows: int, repeats: int, wal: bool = False
) -> dict[str, float]:
    launch(url, wal)
    try:
        for _ in range(3):
            run_to_result(many_steps, 10)
            run_to_result(empty)

        def one_long() -> float:
            began = time.perf_counter()
            assert run_to_result(many_steps, steps) == steps
            return (time.perf_counter() - began) / steps * 1e6

        def ten_step_batch() -> float:
            began = time.perf_counter()
            for _ in range(workflows):
                assert run_to_result(many_steps, 10) == 10
            return (time.perf_counter() - began) / workflows

        def empties() -> float:
            began = time.perf_counter()
            for _ in range(workflows):
                assert run_to_result(empty) == 0
            return (time.perf_counter() - began) / workflows * 1e3

        result = {
            "steps_us": best(repeats, one_long),
            "ten_step_wps": 1.0 / best(repeats, ten_step_batch),
            "empty_ms": best(repeats, empties),
        }
        if url.startswith("sqlite:///"):
            conn = sqlite3.connect(url.removeprefix("sqlite:///"))
            result["journal_mode_is_wal"] = float(
                conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
            )
            conn.close()
        return result
    finally:
        DBOS.destroy()


def one_workflow_steps(url: str, steps: int, repeats: int) -> dict[str, float]:
    launch(url, wal=False)
    try:
        for _ in range(3):
            run_to_result(many_steps, 10)

        def one_long() -> float:
            began = time.perf_counter()
            assert run_to_result(many_steps, steps) == steps
            return (time.perf_counter() - began) / steps * 1e6

        return {"steps_us": best(repeats, one_long)}
    finally:
        DBOS.destroy()


# DBOS's first workflow in a fresh process, with its default configuration (a SQLite
# system database in the current folder); "inside" covers launch() and the workflow.
COLD_FLOW = """
import json, time
from dbos import DBOS

@DBOS.step()
def add(a: int, b: int) -> int:
    return a + b

@DBOS.workflow()
def one(a: int) -> int:
    return add(a, 1)

DBOS(config={"name": "peers-cold"})
t = time.perf_counter()
DBOS.launch()
result = DBOS.start_workflow(one, 1).get_result()
inside = time.perf_counter() - t
assert result == 2, result
print(json.dumps({"result_at": time.time(), "inside": inside}))
DBOS.destroy()
"""


def cold(directory: str, runs: int) -> dict[str, float]:
    """DBOS's cold start, measured exactly as ``pw_side.cold`` measures ours."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cold_start_helpers import cli_argv, cold_figures

    return cold_figures(directory, runs, "dbos", COLD_FLOW, cli_argv("dbos"))


GROUPS: dict[str, Callable[..., dict[str, float]]] = {
    "cold": cold,
    "sequential": sequential,
    "one_workflow_steps": one_workflow_steps,
}


def main(argv: list[str]) -> None:
    spec = json.loads(argv[1])
    group = GROUPS[spec.pop("group")]
    result = group(**spec)
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv)

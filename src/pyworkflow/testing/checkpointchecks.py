"""A step's checkpoint across a worker SIGKILL: the next attempt resumes after it, not at 0.

:func:`checkpoint_across_kill` is the check every backend can run
(``CheckpointProcessCases``): a step in a ``pyworkflow worker`` subprocess
processes ``total`` items, checkpointing its position after each
(``checkpoint_interval = 0``, so every checkpoint is written); at item
``kill_at`` the step signals through a file and waits, and the worker is
SIGKILLed there. Another worker recovers the run once the lease lapses; the
step's next attempt must start at the stored checkpoint (item ``kill_at``),
process every remaining item once, and redo nothing before it. What each
attempt processed is read from the files the step wrote.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import attrs

from pyworkflow.testing.servers import wait_for
from pyworkflow.testing.workers import WorkerProcesses

__all__ = ["CheckpointReport", "checkpoint_across_kill", "checkpoint_across_lease_loss"]


@attrs.frozen
class CheckpointReport:
    """What each attempt did (``figures``) and anything wrong (``problems``)."""

    figures: dict[str, Any]
    problems: list[str]


def _items(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def checkpoint_across_kill(
    storage_url: str,
    directory: Path,
    *,
    total: int = 1000,
    kill_at: int = 600,
    timeout: float = 120.0,
) -> CheckpointReport:
    """Run the check on ``storage_url`` (see the module docstring); return its report."""
    import pyworkflow
    from pyworkflow.testing import checkpointflows

    work = directory / "items"
    work.mkdir()
    pool = WorkerProcesses(
        storage_url,
        directory,
        modules="pyworkflow.testing.checkpointflows",
        settings={
            "PYWORKFLOW_LEASE_SECONDS": "2",
            "PYWORKFLOW_POLL_INTERVAL": "0.2",
            "PYWORKFLOW_CHECKPOINT_INTERVAL": "0",
        },
    )
    problems: list[str] = []
    began = time.monotonic()
    try:
        pool.start("w1")
        pyworkflow.configure(storage=storage_url, embedded_worker=False)
        run_id = pyworkflow.start(checkpointflows.checkpointed_batch, str(work), total, kill_at)
        wait_for(lambda: (work / "stopped").exists(), timeout, f"the step to reach {kill_at}")
        pool.kill("w1")  # SIGKILL while the step is at item kill_at
        (work / "killed").write_text("")
        pool.start("w2")
        remaining = max(1.0, timeout - (time.monotonic() - began))
        result = pyworkflow.get_result(run_id, timeout=remaining)
        if result != total:
            problems.append(f"run {run_id}: result {result!r}, expected {total}")
        attempts = sorted(int(p.stem.split("-")[1]) for p in work.glob("attempt-*.txt"))
        done = {n: _items(work / f"attempt-{n}.txt") for n in attempts}
        resumed = {n: int((work / f"resumed-{n}.txt").read_text()) for n in attempts}
        if len(attempts) < 2:
            problems.append(f"the step was not run again after the kill: attempts {attempts}")
        else:
            first, after = attempts[0], attempts[-1]
            if done[first] != list(range(kill_at)):
                problems.append(f"attempt {first} processed {len(done[first])} items, not 0..")
            if resumed[after] != kill_at:
                problems.append(
                    f"attempt {after} resumed at item {resumed[after]}, not at the last "
                    f"checkpoint ({kill_at})"
                )
            if done[after] != list(range(kill_at, total)):
                problems.append(f"attempt {after} did not process {kill_at}..{total - 1} once")
        processed = [item for n in attempts for item in done[n]]
        if sorted(set(processed)) != list(range(total)):
            problems.append("some items were never processed")
        redone = len(processed) - len(set(processed))
        figures = {
            "attempts": attempts,
            "resumed_at": resumed,
            "processed": {n: len(items) for n, items in done.items()},
            "redone": redone,
            "seconds": round(time.monotonic() - began, 2),
        }
        if redone:
            problems.append(f"{redone} items were processed twice")
        if problems:
            problems.append(pool.log_text())
        return CheckpointReport(figures, problems)
    finally:
        pool.stop_all()


def checkpoint_across_lease_loss(
    storage_url: str, directory: Path, *, total: int = 200, stop_at: int = 120
) -> CheckpointReport:
    """A worker paused (SIGSTOP) mid-step loses its lease; another takes the step over.

    The step's next attempt, on the other worker, resumes at the checkpoint
    (``stop_at``) and finishes. Then the paused worker is resumed (SIGCONT)
    and its step goes on as a zombie: it must not change the stored
    checkpoint, which stays the newer attempt's last one (``total``).
    """
    import signal

    import pyworkflow
    from pyworkflow.runtime import get_runtime
    from pyworkflow.testing import checkpointflows

    work = directory / "items"
    work.mkdir()
    pool = WorkerProcesses(
        storage_url,
        directory,
        modules="pyworkflow.testing.checkpointflows",
        settings={
            "PYWORKFLOW_LEASE_SECONDS": "2",
            "PYWORKFLOW_POLL_INTERVAL": "0.2",
            "PYWORKFLOW_CHECKPOINT_INTERVAL": "0",
        },
    )
    problems: list[str] = []
    began = time.monotonic()
    try:
        paused = pool.start("w1")
        pyworkflow.configure(storage=storage_url, embedded_worker=False)
        run_id = pyworkflow.start(checkpointflows.checkpointed_batch, str(work), total, stop_at)
        wait_for(lambda: (work / "stopped").exists(), 60, f"the step to reach {stop_at}")
        paused.send_signal(signal.SIGSTOP)  # a long pause: its leases lapse
        (work / "killed").write_text("")  # later attempts do not stop
        pool.start("w2")
        result = pyworkflow.get_result(run_id, timeout=60)
        if result != total:
            problems.append(f"run {run_id}: result {result!r}, expected {total}")
        (work / "resume").write_text("")
        paused.send_signal(signal.SIGCONT)  # the zombie wakes up and goes on
        time.sleep(1.0)  # let it try (nothing to wait for: it must change nothing)
        resumed = {
            int(p.stem.split("-")[1]): int(p.read_text()) for p in work.glob("resumed-*.txt")
        }
        rt = get_runtime()
        step_id = next(
            str(e.correlation_id)
            for e in pyworkflow.get_events(run_id)
            if e.type == "step_completed"
        )
        stored = rt.call(rt.storage.get_step_checkpoint, run_id, step_id)
        last = max(resumed)
        if resumed.get(last) != stop_at or last < 2:
            problems.append(f"the attempt after the take-over resumed at {resumed}")
        if stored is None or stored.attempt != last or stored.data != str(total):
            problems.append(f"the stored checkpoint is {stored}, not attempt {last}'s {total}")
        figures = {
            "resumed_at": resumed,
            "stored": None if stored is None else (stored.attempt, stored.data),
            "zombie_refused": "refused" in pool.logs["w1"].read_text(),
            "seconds": round(time.monotonic() - began, 2),
        }
        if problems:
            problems.append(pool.log_text())
        return CheckpointReport(figures, problems)
    finally:
        pool.stop_all()

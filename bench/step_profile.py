"""Where a sequential step's time goes: the runtime loop thread's CPU per step, and a profile.

Run: ``python bench/step_profile.py [--steps 3000] [--runs 5] [--storage memory://]
[--profile [--top 40]]``.

Without ``--profile`` it runs ``--runs`` workflows of ``--steps`` sequential
steps (the workflow of ``bench/step_overhead.py``) and prints, for each, the
CPU time the runtime's event-loop thread spent per step (``time.thread_time``
read on that thread), next to the engine's wall time per step (run created to
completed). CPU time moves less than wall time on a loaded machine; take the
minimum.

With ``--profile`` it runs one workflow with ``cProfile`` enabled on the loop
thread only and prints the functions by own time and the Python calls per
step. cProfile's own overhead is about 2-3x on this path: compare the
profiled figure with the unprofiled one, and use the profile for shares and
call counts, not for absolute times.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import cProfile
import pstats
import sys
import time
from pathlib import Path

import pyworkflow
from pyworkflow import runtime

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_overhead import many_steps  # the same workflow, from this folder


def _on_loop(fn: object) -> object:
    """Run ``fn()`` on the runtime's event-loop thread; its result."""
    rt = runtime.get_runtime()
    loop = rt._loop  # the runtime's loop: the thread whose time is measured
    assert loop is not None
    done: concurrent.futures.Future[object] = concurrent.futures.Future()
    loop.call_soon_threadsafe(lambda: done.set_result(fn()))  # type: ignore[operator]
    return done.result()


def _run(steps: int) -> tuple[float, float]:
    """One workflow: (loop-thread CPU µs per step, engine wall µs per step)."""
    cpu_before = _on_loop(time.thread_time)
    run_id = pyworkflow.start(many_steps, steps)
    assert pyworkflow.get_result(run_id, timeout=600) == steps
    cpu_after = _on_loop(time.thread_time)
    run = pyworkflow.get_run(run_id)
    assert run.completed_at is not None
    wall = (run.completed_at - run.created_at).total_seconds()
    return (cpu_after - cpu_before) / steps * 1e6, wall / steps * 1e6  # type: ignore[operator]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--storage", default="memory://")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    runtime.reset()
    pyworkflow.configure(storage=args.storage, poll_interval=0.01)
    pyworkflow.get_result(pyworkflow.start(many_steps, 3), timeout=60)  # warm up
    if not args.profile:
        figures = [_run(args.steps) for _ in range(args.runs)]
        cpu = " ".join(f"{c:.1f}" for c, _ in figures)
        print(f"{args.storage}: loop-thread CPU us/step {cpu} (min {min(figures)[0]:.1f})")
        print(f"{args.storage}: engine wall us/step min {min(w for _, w in figures):.1f}")
        return
    profile = cProfile.Profile()
    _on_loop(profile.enable)
    cpu, wall = _run(args.steps)
    _on_loop(profile.disable)
    stats = pstats.Stats(profile)
    calls = sum(entry[1] for entry in stats.stats.values())  # type: ignore[attr-defined]
    print(f"{args.storage}, profiled: {wall:.1f} us/step wall, {cpu:.1f} us/step loop CPU")
    print(f"Python calls per step: {calls / args.steps:.1f}")
    stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()

"""Schedules and queues checked with real worker processes on one storage (issue 16).

Each check starts ``pyworkflow worker`` processes on ``storage_url``, drives
them from this process (a pure client: ``embedded_worker=False``), then reads
what storage recorded and returns a :class:`FlowReport` whose ``problems``
lists every violation found. A storage plugin's tests call them with their
own server::

    report = schedule_ticks(storage_url, tmp_path)
    assert report.problems == [], report

The analysis helpers (:func:`schedule_runs`, :func:`tick_problems`,
:func:`tick_run_problems`, :func:`settle`, :func:`run_intervals`,
:func:`max_overlap`, :func:`window_max`) are public so that other executors'
tests (Celery) check their own processes the same way. Every time compared
across processes is a wall-clock reading of one machine, so they compare.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs

from pyworkflow.testing.servers import wait_for
from pyworkflow.testing.workers import WorkerProcesses

__all__ = [
    "FLOW_MODULE",
    "FlowReport",
    "all_runs",
    "catchup_expected",
    "max_overlap",
    "queue_concurrency",
    "queue_partitions",
    "queue_rate",
    "run_intervals",
    "schedule_catchup",
    "schedule_runs",
    "schedule_ticks",
    "settle",
    "tick_problems",
    "tick_run_problems",
    "window_max",
]

#: The module the worker processes import (the checks' workflows).
FLOW_MODULE = "pyworkflow.testing.flowflows"
#: The every-second cron of the schedule checks (6 fields: seconds first).
EVERY_SECOND = "* * * * * *"
_SECOND = timedelta(seconds=1)


@attrs.frozen
class FlowReport:
    """What one check saw: its name, wall time, measured figures, and anything wrong."""

    check: str
    seconds: float
    figures: dict[str, Any]
    problems: list[str]


# ----- reading what storage recorded -----


def all_runs(workflow: str) -> list[Any]:
    """Every stored run of ``workflow`` (storage ``Run`` rows), all pages."""
    from pyworkflow.client import list_runs

    runs: list[Any] = []
    cursor: str | None = None
    while True:
        page = list_runs(workflow=workflow, limit=200, cursor=cursor)
        runs += page.runs
        if page.next_cursor is None:
            return runs
        cursor = page.next_cursor


def schedule_runs(name: str, runs: Iterable[Any]) -> list[tuple[datetime, Any]]:
    """``(tick, run)`` of the runs started by schedule ``name``, by tick.

    The tick is read from the run's idempotency key, ``schedule:<name>:<tick iso>``.
    """
    prefix = f"schedule:{name}:"
    found = [
        (datetime.fromisoformat(run.idempotency_key[len(prefix) :]), run)
        for run in runs
        if (run.idempotency_key or "").startswith(prefix)
    ]
    return sorted(found, key=lambda pair: pair[0])


def tick_problems(ticks: Sequence[datetime], period: timedelta = _SECOND) -> list[str]:
    """Duplicates among ``ticks``, and ticks missing between the first and the last."""
    problems: list[str] = []
    counts = Counter(ticks)
    doubled = sorted(t for t, n in counts.items() if n != 1)
    if doubled:
        problems.append(f"ticks with more than one run: {[t.isoformat() for t in doubled]}")
    if counts:
        first, last = min(counts), max(counts)
        missing: list[str] = []
        tick = first
        while tick <= last:
            if tick not in counts:
                missing.append(tick.isoformat())
            tick += period
        if missing:
            problems.append(f"ticks without a run between the first and the last: {missing}")
    return problems


def settle(workflow: str, *, quiet: float = 1.5, timeout: float = 120.0) -> list[Any]:
    """Wait until every run of ``workflow`` has ended and none was added for ``quiet`` s.

    Returns the runs. AssertionError after ``timeout``.
    """
    seen: dict[str, Any] = {"runs": None, "since": time.monotonic()}

    def settled() -> bool:
        runs = all_runs(workflow)
        if seen["runs"] is None or len(runs) != len(seen["runs"]):
            seen.update(since=time.monotonic())
        seen["runs"] = runs
        ended = all(run.status.is_terminal for run in runs)
        return ended and time.monotonic() - seen["since"] >= quiet

    wait_for(settled, timeout, f"every run of {workflow} to end", interval=0.25)
    return list(seen["runs"])


def run_intervals(
    run_ids: Iterable[str],
) -> tuple[dict[str, tuple[datetime, datetime]], list[str]]:
    """Each run's ``[first step_started, completed_at]``, and the runs not completed.

    Both ends lie inside the span in which the run holds its queue place:
    its first step starts after the admission that made it active was
    committed (the worker activates what the admission returned), and
    ``completed_at`` is read by the worker before it commits the run's end
    (the run stays active until that commit). So these intervals are inner
    bounds of the true ones: if more of them overlap than a limit allows, the
    limit was broken.
    """
    from pyworkflow.client import get_events, get_run
    from pyworkflow.models import EventType, RunStatus

    intervals: dict[str, tuple[datetime, datetime]] = {}
    problems: list[str] = []
    for run_id in run_ids:
        run = get_run(run_id)
        starts = [e.timestamp for e in get_events(run_id) if e.type == EventType.STEP_STARTED]
        if run.status is not RunStatus.COMPLETED or run.completed_at is None or not starts:
            problems.append(f"run {run_id}: {run.status.value}, {len(starts)} step start(s)")
            continue
        intervals[run_id] = (min(starts), run.completed_at)
    return intervals, problems


def max_overlap(intervals: Iterable[tuple[datetime, datetime]]) -> int:
    """The most intervals open at one instant (one that ends where another starts: not both)."""
    edges: list[tuple[datetime, int]] = []
    for start, end in intervals:
        edges += [(start, 1), (end, -1)]
    edges.sort(key=lambda edge: (edge[0], edge[1]))  # ends before starts at the same instant
    most = open_now = 0
    for _, change in edges:
        open_now += change
        most = max(most, open_now)
    return most


def window_max(times: Iterable[datetime], period: timedelta) -> tuple[int, datetime | None]:
    """The most ``times`` in one window ``[t, t + period)``, and the first window holding them."""
    ordered = sorted(times)
    most, where, end = 0, None, 0
    for i, start in enumerate(ordered):
        while end < len(ordered) and ordered[end] < start + period:
            end += 1
        if end - i > most:
            most, where = end - i, start
    return most, where


# ----- driving worker processes -----


def _client(storage_url: str, queues: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Make this process a client of ``storage_url`` (no embedded worker), knowing ``queues``."""
    import pyworkflow

    pyworkflow.configure(storage=storage_url, embedded_worker=False, queues=dict(queues or {}))


def _queue_env(name: str, options: Mapping[str, Any]) -> dict[str, str]:
    """``PYWORKFLOW_QUEUES__<NAME>__<OPTION>`` variables of one queue, for worker processes."""
    return {
        f"PYWORKFLOW_QUEUES__{name.upper()}__{option.upper()}": str(value)
        for option, value in options.items()
    }


def _latest_firer(pool: WorkerProcesses) -> str | None:
    """The live worker whose log shows the latest ``schedule fired`` line (None: none yet)."""
    latest: tuple[str, str] | None = None
    for name, log in pool.logs.items():
        if name not in pool.procs:
            continue
        stamps = [line[:23] for line in log.read_text().splitlines() if "schedule fired" in line]
        if stamps and (latest is None or stamps[-1] > latest[0]):
            latest = (stamps[-1], name)
    return None if latest is None else latest[1]


def tick_run_problems(name: str, pairs: list[tuple[datetime, Any]]) -> list[str]:
    """Each run of the schedule completed and returned its tick (``scheduled_at()``)."""
    from pyworkflow.client import get_run
    from pyworkflow.models import RunStatus

    problems: list[str] = []
    for tick, run in pairs:
        info = get_run(run.run_id)
        if info.status is not RunStatus.COMPLETED:
            problems.append(f"{name}: run {run.run_id} of tick {tick.isoformat()} {info.status}")
        elif info.result != tick.isoformat():
            problems.append(
                f"{name}: run {run.run_id} of tick {tick.isoformat()} read scheduled_at "
                f"{info.result!r}"
            )
    return problems


def schedule_ticks(
    storage_url: str,
    directory: Path,
    *,
    workers: int = 3,
    seconds: float = 10.0,
    kill_after: float = 5.0,
    name: str = "every-second",
    interval: bool = False,
) -> FlowReport:
    """A 1-second cron fired by ``workers`` processes, one SIGKILLed after ``kill_after`` s.

    With ``interval`` the schedule is the interval ``every="1s"`` instead of the
    cron ``* * * * * *``: the same ticks, the same guarantee.

    The schedule (overlap ``allow``: each run is short) is created here, then
    fires for ``seconds``; the worker that logged the latest firing is
    killed mid-way, 10 ms after a tick (``max_lateness_s`` near the lease,
    3 s, says it was firing that tick). The schedule is then paused and every run awaited. A
    problem is any tick between the first fired and the last fired with no
    run or more than one, and any run not completed or whose
    ``scheduled_at()`` is not its tick.
    """
    from pyworkflow.schedules import create_schedule, pause_schedule
    from pyworkflow.testing import flowflows

    began = time.monotonic()
    pool = WorkerProcesses(storage_url, directory, modules=FLOW_MODULE)
    try:
        for i in range(workers):
            pool.start(f"w{i + 1}")
        _client(storage_url)
        if interval:
            create_schedule(name, flowflows.flow_tick, every="1s", overlap="allow")
        else:
            create_schedule(name, flowflows.flow_tick, EVERY_SECOND, overlap="allow")
        time.sleep(kill_after)
        # just after a tick, when a worker may be firing it (claimed, run created or not,
        # schedule not yet advanced): its lease must expire before another fires the tick
        time.sleep(1.0 - time.time() % 1.0 + 0.01)
        victim = _latest_firer(pool) or "w1"
        pool.kill(victim)
        time.sleep(max(0.0, seconds - kill_after - 1.0))
        pause_schedule(name)
        runs = settle(flowflows.FLOW_TICK)
    finally:
        pool.stop_all()
    pairs = schedule_runs(name, runs)
    ticks = [tick for tick, _ in pairs]
    problems = tick_problems(ticks)
    if len(set(ticks)) < seconds / 2:
        problems.append(f"only {len(set(ticks))} ticks fired in {seconds}s")
    problems += tick_run_problems(name, pairs)
    lateness = [(run.created_at - tick).total_seconds() for tick, run in pairs]
    figures = {
        "ticks": len(set(ticks)),
        "runs": len(pairs),
        "first": ticks[0].isoformat() if ticks else None,
        "last": ticks[-1].isoformat() if ticks else None,
        "killed": victim,
        "max_lateness_s": round(max(lateness, default=0.0), 3),
    }
    return FlowReport("schedule_ticks", time.monotonic() - began, figures, problems)


def catchup_expected(
    policy: str, first: datetime, now: datetime, grace: timedelta, last: datetime
) -> tuple[set[datetime], list[datetime]]:
    """The ticks a restart's first firing at ``now`` and the on-time firings after it start.

    ``first`` is the first tick not fired before the downtime, ``last`` the
    last tick fired at all. A tick ``t`` is missed when ``now - t > grace``:
    ``none`` starts none of them, ``latest`` the latest, ``all`` every one (the
    catch-up window, a day, holds them all). Every later tick is on time.
    Returns the expected ticks and the missed ones.
    """
    missed: list[datetime] = []
    tick = first
    while tick < now - grace:
        missed.append(tick)
        tick += _SECOND
    chosen = {"none": [], "latest": missed[-1:], "all": missed}[policy]
    on_time: set[datetime] = set()
    while tick <= last:
        on_time.add(tick)
        tick += _SECOND
    return set(chosen) | on_time, missed


def schedule_catchup(
    storage_url: str,
    directory: Path,
    *,
    workers: int = 2,
    grace: float = 2.0,
    up: float = 4.0,
    down: float = 20.0,
    after: float = 4.0,
    policies: Sequence[str] = ("none", "latest", "all"),
    slack: float = 1.0,
) -> FlowReport:
    """Three 1-second crons (catch-up ``none``, ``latest``, ``all``) across ``down`` s of downtime.

    Workers fire them for ``up`` s, all stop (SIGTERM) for ``down`` s, and
    start again for ``after`` s. The expected runs are computed from what was
    recorded: the restart's first firing of a schedule happened at C, the
    earliest ``created_at`` among its runs created after the restart; a
    downtime tick ``t`` with ``C - t > grace`` was missed. ``none`` starts no
    run for a missed tick, ``latest`` exactly one (the latest missed), ``all``
    one for each; every tick after the missed ones has exactly one run.

    C is read after the firing read its clock (``now``): a tick within
    ``slack`` (1 s) of the ``C - grace`` boundary may fall either way, so the
    runs must equal the expected set for some ``now`` in ``[C - slack, C]``.
    Figures per policy: the missed ticks and the runs started for them.
    """
    from pyworkflow.schedules import create_schedule, pause_schedule
    from pyworkflow.testing import flowflows

    began = time.monotonic()
    pool = WorkerProcesses(storage_url, directory, modules=FLOW_MODULE)
    names = {policy: f"catchup-{policy}" for policy in policies}
    try:
        for i in range(workers):
            pool.start(f"w{i + 1}")
        _client(storage_url)
        for policy, name in names.items():
            create_schedule(
                name,
                flowflows.flow_tick,
                EVERY_SECOND,
                overlap="allow",
                catchup=policy,
                grace=f"{grace}s",
            )
        time.sleep(up)
        pool.stop_all()
        time.sleep(down)
        restarted = _utcnow()
        for i in range(workers):
            pool.start(f"r{i + 1}")
        time.sleep(after)
        for name in names.values():
            pause_schedule(name)
        runs = settle(flowflows.FLOW_TICK)
    finally:
        pool.stop_all()
    problems: list[str] = []
    figures: dict[str, Any] = {"grace_s": grace, "down_s": down}
    for policy, name in names.items():
        pairs = schedule_runs(name, runs)
        doubled = sorted(t.isoformat() for t, n in Counter(t for t, _ in pairs).items() if n > 1)
        if doubled:
            problems.append(f"{name}: ticks with more than one run: {doubled}")
        problems += tick_run_problems(name, pairs)
        before = sorted(t for t, run in pairs if run.created_at < restarted)
        later = [(t, run) for t, run in pairs if run.created_at >= restarted]
        if not before or not later:
            problems.append(f"{name}: {len(before)} runs before the downtime, {len(later)} after")
            continue
        problems += [f"{name} before the downtime: {p}" for p in tick_problems(before)]
        first_unfired = before[-1] + _SECOND
        fired_at = min(run.created_at for _, run in later)  # C
        ticks = {t for t, _ in later}
        last = max(ticks)
        outcomes: list[tuple[set[datetime], list[datetime]]] = []
        for step in range(101):
            now = fired_at - timedelta(seconds=slack * step / 100)
            outcomes.append(
                catchup_expected(policy, first_unfired, now, timedelta(seconds=grace), last)
            )
        matched = [missed for expected, missed in outcomes if expected == ticks]
        if not matched:
            shown = sorted({tuple(sorted(t.isoformat() for t in e)) for e, _ in outcomes})
            problems.append(
                f"{name}: runs after the restart at ticks {sorted(t.isoformat() for t in ticks)} "
                f"(C={fired_at.isoformat()}); expected one of {shown}"
            )
            missed = outcomes[0][1]
        else:
            missed = matched[0]
        figures[policy] = {
            "missed_ticks": len(missed),
            "missed_runs": len(ticks & set(missed)),
            "runs_after_restart": len(ticks),
            "first_fired_after_restart": fired_at.isoformat(),
        }
    return FlowReport("schedule_catchup", time.monotonic() - began, figures, problems)


def _utcnow() -> datetime:
    from pyworkflow.models import utcnow

    return utcnow()


def _start_queued(
    queue: str, count: int, seconds: float, keys: Sequence[str | None] = (None,)
) -> list[str]:
    from pyworkflow.client import start_workflow
    from pyworkflow.testing import flowflows

    return [
        start_workflow(
            flowflows.flow_short, (i, seconds), queue=queue, partition_key=keys[i % len(keys)]
        )
        for i in range(count)
    ]


def _await_results(run_ids: Sequence[str], timeout: float) -> list[str]:
    from pyworkflow.client import get_result

    problems: list[str] = []
    deadline = time.monotonic() + timeout
    for i, run_id in enumerate(run_ids):
        try:
            result = get_result(run_id, timeout=max(1.0, deadline - time.monotonic()))
        except Exception as exc:
            problems.append(f"run {run_id}: {type(exc).__name__}: {exc}")
            continue
        if result != i:
            problems.append(f"run {run_id}: result {result!r}, expected {i}")
    return problems


def queue_concurrency(
    storage_url: str,
    directory: Path,
    *,
    workers: int = 4,
    runs: int = 200,
    concurrency: int = 3,
    step_seconds: float = 0.03,
    queue: str = "flowq",
    timeout: float = 300.0,
) -> FlowReport:
    """``runs`` one-step runs in a queue of ``concurrency`` over ``workers`` processes.

    A problem is any instant at which more than ``concurrency`` of the
    recorded intervals (:func:`run_intervals`) overlap, and any run that did
    not complete with its result.
    """
    began = time.monotonic()
    options = {"concurrency": concurrency}
    pool = WorkerProcesses(
        storage_url, directory, modules=FLOW_MODULE, settings=_queue_env(queue, options)
    )
    try:
        for i in range(workers):
            pool.start(f"w{i + 1}")
        _client(storage_url, {queue: options})
        run_ids = _start_queued(queue, runs, step_seconds)
        problems = _await_results(run_ids, timeout)
    finally:
        pool.stop_all()
    intervals, missing = run_intervals(run_ids)
    problems += missing
    most = max_overlap(intervals.values())
    if most > concurrency:
        problems.append(f"{most} runs of queue {queue} ran at once (concurrency {concurrency})")
    figures = {"runs": runs, "completed": len(intervals), "max_running": most}
    return FlowReport("queue_concurrency", time.monotonic() - began, figures, problems)


def queue_rate(
    storage_url: str,
    directory: Path,
    *,
    workers: int = 4,
    count: int = 20,
    period: float = 5.0,
    seconds: float = 30.0,
    queue: str = "flowrate",
    tolerance: int = 1,
) -> FlowReport:
    """A queue with ``rate = "<count>/<period>s"`` fed more runs than it may admit in ``seconds``.

    Problems: a window ``[t, t + period)`` of ``admitted_at`` holding more
    than ``count + tolerance`` admissions (``tolerance``: admission times are
    clock reads of different processes, each taken before its transaction,
    so one process's admission may carry a time a little before another's
    that it followed), and fewer admissions in the ``seconds`` after the
    first than ``count * seconds / (period + 1 s)`` (each refill of the
    window may wait for a poll interval, 0.5 s, plus the pass itself).
    """
    began = time.monotonic()
    options = {"rate": f"{count}/{period:g}s"}
    pool = WorkerProcesses(
        storage_url, directory, modules=FLOW_MODULE, settings=_queue_env(queue, options)
    )
    fed = int(count * (seconds / period + 2))
    try:
        for i in range(workers):
            pool.start(f"w{i + 1}")
        _client(storage_url, {queue: options})
        run_ids = _start_queued(queue, fed, 0.0)
        from pyworkflow.client import get_run

        def admitted_first() -> datetime | None:
            return get_run(run_ids[0]).admitted_at

        first = wait_for(admitted_first, 60, "the first admission")
        assert first is not None
        time.sleep(max(0.0, seconds - (_utcnow() - first).total_seconds()) + 0.5)
    finally:
        pool.stop_all()
    from pyworkflow.testing import flowflows

    admitted = sorted(r.admitted_at for r in all_runs(flowflows.FLOW_SHORT) if r.admitted_at)
    if not admitted:
        return FlowReport("queue_rate", time.monotonic() - began, {}, ["no run was admitted"])
    start = admitted[0]
    in_period = [t for t in admitted if t < start + timedelta(seconds=seconds)]
    most, where = window_max(admitted, timedelta(seconds=period))
    lower = int(count * seconds / (period + 1.0))
    problems: list[str] = []
    if most > count + tolerance:
        problems.append(
            f"{most} admissions in the {period}s window from {where} (rate {count}/{period}s)"
        )
    if len(in_period) < lower:
        problems.append(f"only {len(in_period)} admissions in {seconds}s (at least {lower})")
    figures = {
        "fed": fed,
        "admitted_in_period": len(in_period),
        "lower_bound": lower,
        "ideal": count * int(seconds // period),
        "max_in_window": most,
    }
    return FlowReport("queue_rate", time.monotonic() - began, figures, problems)


def queue_partitions(
    storage_url: str,
    directory: Path,
    *,
    workers: int = 4,
    keys: int = 4,
    runs_per_key: int = 8,
    step_seconds: float = 0.1,
    queue: str = "flowpart",
    timeout: float = 300.0,
) -> FlowReport:
    """A queue with ``partition_concurrency = 1``: runs of ``keys`` partition keys.

    Problems: two runs of one key overlapping (:func:`run_intervals`), any
    run not completed with its result, and runs of different keys never
    overlapping (the limit is per key, not a queue-wide one).
    """
    from pyworkflow.client import get_run

    began = time.monotonic()
    options = {"partition_concurrency": 1}
    pool = WorkerProcesses(
        storage_url, directory, modules=FLOW_MODULE, settings=_queue_env(queue, options)
    )
    names = [f"key{k}" for k in range(keys)]
    try:
        for i in range(workers):
            pool.start(f"w{i + 1}")
        _client(storage_url, {queue: options})
        run_ids = _start_queued(queue, keys * runs_per_key, step_seconds, names)
        problems = _await_results(run_ids, timeout)
    finally:
        pool.stop_all()
    intervals, missing = run_intervals(run_ids)
    problems += missing
    by_key: dict[str, list[tuple[datetime, datetime]]] = {}
    for run_id, interval in intervals.items():
        by_key.setdefault(str(get_run(run_id).partition_key), []).append(interval)
    most = {key: max_overlap(spans) for key, spans in sorted(by_key.items())}
    problems += [f"{n} runs of partition {key} ran at once" for key, n in most.items() if n > 1]
    overall = max_overlap(intervals.values())
    if overall < 2:
        problems.append("runs of different partition keys never ran at once")
    figures = {"runs": len(run_ids), "max_running_per_key": most, "max_running": overall}
    return FlowReport("queue_partitions", time.monotonic() - began, figures, problems)

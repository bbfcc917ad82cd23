"""PyWorkflow against its peers: one table of ratios, every row measured in this run.

Setup (a throw-away venv with PyWorkflow, its Celery plugin and the pinned peers)::

    python -m venv /tmp/peersvenv
    /tmp/peersvenv/bin/pip install -e . -e plugins/pyworkflow-celery -r bench/peers/requirements.txt
    /tmp/peersvenv/bin/python bench/peers.py            # add --markdown for docs/performance.md

The optional ``--postgres`` row also needs ``-e plugins/pyworkflow-postgres`` and
PostgreSQL's server binaries (it starts a throw-away cluster). Every workload
runs in a fresh subprocess (``bench/peers/*_side.py``) with a timeout; servers
(redis-server, Celery workers, PostgreSQL) are started by the bench and stopped
on exit, on Ctrl-C and on SIGTERM. See ``docs/performance.md`` for what each
row means.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SIDES = HERE / "peers"
REPO = HERE.parent
PY = sys.executable

GROUPS = ("sequential", "sqlite", "cold", "celery", "postgres")
ROW_GROUP = {
    "steps": "sequential",
    "ten_step": "sequential",
    "empty": "sequential",
    "sqlite_full": "sqlite",
    "sqlite_normal": "sqlite",
    "memory": "sqlite",
    "import": "cold",
    "first_workflow": "cold",
    "first_workflow_spawn": "cold",
    "cli_help": "cold",
    "celery": "celery",
    "postgres": "postgres",
}


@dataclass(frozen=True)
class Sizes:
    steps: int
    workflows: int
    repeats: int
    cold_runs: int
    celery_runs: int
    celery_workers: int = 2
    celery_concurrency: int = 4


FULL = Sizes(steps=1000, workflows=100, repeats=3, cold_runs=7, celery_runs=500)
QUICK = Sizes(steps=100, workflows=10, repeats=1, cold_runs=3, celery_runs=40)


@dataclass
class Row:
    """One line of the table: our figure, the peer's, their ratio and the target."""

    key: str
    workload: str
    ours: str
    peer: str
    ratio: float | None
    target: str
    passed: bool | None
    notes: str = ""

    @property
    def verdict(self) -> str:
        if self.passed is None:
            return "-"
        return "PASS" if self.passed else "MISS"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)


class BenchError(RuntimeError):
    """A workload subprocess failed or timed out."""


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without PyWorkflow/DBOS settings, plus ``extra``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYWORKFLOW_", "DBOS_", "DBOS__"))
    }
    env.update(extra)
    return env


def run_child(argv: list[str], timeout: float, cwd: Path | None = None) -> str:
    """Run ``argv``; return its stdout. SIGTERM (then SIGKILL) on timeout or Ctrl-C."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=clean_env(), cwd=cwd)
        try:
            proc.wait(timeout=timeout)
        except (subprocess.TimeoutExpired, KeyboardInterrupt) as exc:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise BenchError(f"{Path(argv[1]).name} timed out after {timeout:.0f} s") from None
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        if proc.returncode != 0:
            tail = err.read().decode(errors="replace")[-1500:]
            raise BenchError(f"{' '.join(argv[:2])} exited with {proc.returncode}: {tail}")
        return stdout


def run_side(side: str, spec: dict[str, Any], timeout: float) -> dict[str, float]:
    """Run ``bench/peers/<side>.py`` with a JSON spec; parse its ``RESULT`` line."""
    stdout = run_child([PY, str(SIDES / f"{side}.py"), json.dumps(spec)], timeout)
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            result: dict[str, float] = json.loads(line[len("RESULT ") :])
            return result
    raise BenchError(f"{side}.py printed no RESULT line: {stdout[-500:]}")


def raw_commit_us(path: Path, synchronous: str = "FULL", n: int = 500) -> float:
    """One INSERT+COMMIT of a small row through stdlib sqlite3 (WAL), µs."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, payload TEXT)")
        began = time.perf_counter()
        for i in range(n):
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t (payload) VALUES (?)", (f'{{"result": {i}}}',))
            conn.execute("COMMIT")
        return (time.perf_counter() - began) / n * 1e6
    finally:
        conn.close()


def best_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Per figure, the best round: the highest ``*_wps``, the lowest of the others."""
    return {
        key: (max if key.endswith("_wps") else min)(r[key] for r in rounds) for key in rounds[0]
    }


def fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


# ----------------------------------------------------------------------------- groups


def group_sequential(sizes: Sizes, tmp: Path, report: Report) -> None:
    """1,000 steps, 100 x 10 steps, 100 empty: PyWorkflow vs DBOS default and WAL."""
    common = {"group": "sequential", "steps": sizes.steps, "workflows": sizes.workflows}
    rounds: dict[str, list[dict[str, float]]] = {"pw": [], "dd": [], "dw": []}
    for r in range(sizes.repeats):  # interleaved, so that load from other jobs hits all sides
        rounds["pw"].append(
            run_side(
                "pw_side",
                {**common, "repeats": 1, "storage": f"sqlite:///{tmp / f'pw{r}.db'}"},
                900.0,
            )
        )
        rounds["dd"].append(
            run_side(
                "dbos_side",
                {**common, "repeats": 1, "url": f"sqlite:///{tmp / f'dbos-default{r}.sqlite'}"},
                900.0,
            )
        )
        rounds["dw"].append(
            run_side(
                "dbos_side",
                {
                    **common,
                    "repeats": 1,
                    "url": f"sqlite:///{tmp / f'dbos-wal{r}.sqlite'}",
                    "wal": True,
                },
                900.0,
            )
        )
    pw, dd, dw = (best_of(rounds[k]) for k in ("pw", "dd", "dw"))
    if not dw.get("journal_mode_is_wal"):
        report.errors.append("DBOS's SQLite file was not in WAL mode after the run")
    ratio = dw["steps_us"] / pw["steps_us"]
    report.rows.append(
        Row(
            "steps",
            f"1 workflow of {sizes.steps:,} sequential steps, µs per step",
            fmt(pw["steps_us"]),
            f"{fmt(dw['steps_us'])} DBOS-WAL (default {fmt(dd['steps_us'])})",
            ratio,
            ">= 5x",
            ratio >= 5,
            "ratio = DBOS-WAL / PyWorkflow",
        )
    )
    ratio = pw["ten_step_wps"] / dw["ten_step_wps"]
    report.rows.append(
        Row(
            "ten_step",
            f"{sizes.workflows} workflows of 10 steps, one after another, workflows/s",
            fmt(pw["ten_step_wps"], 1),
            f"{fmt(dw['ten_step_wps'], 1)} DBOS-WAL (default {fmt(dd['ten_step_wps'], 1)})",
            ratio,
            ">= 5x",
            ratio >= 5,
            "ratio = PyWorkflow / DBOS-WAL",
        )
    )
    ratio = dw["empty_ms"] / pw["empty_ms"]
    report.rows.append(
        Row(
            "empty",
            f"{sizes.workflows} empty workflows, start() to get_result(), ms each",
            fmt(pw["empty_ms"], 2),
            f"{fmt(dw['empty_ms'], 2)} DBOS-WAL (default {fmt(dd['empty_ms'], 2)})",
            ratio,
            ">= 2x",
            ratio >= 2,
            "ratio = DBOS-WAL / PyWorkflow",
        )
    )


def group_sqlite(sizes: Sizes, tmp: Path, report: Report) -> None:
    """Per-step SQLite cost against raw commits on the same file; memory storage."""
    r = run_side(
        "pw_side",
        {
            "group": "per_step_sqlite",
            "directory": str(tmp),
            "steps": sizes.steps,
            "repeats": sizes.repeats,
        },
        600.0,
    )
    report.header.append(
        f"fsync'd SQLite commit (WAL, synchronous=FULL, INSERT+COMMIT, stdlib sqlite3): "
        f"{fmt(r['full_raw_us'])} µs; synchronous=NORMAL: {fmt(r['normal_raw_us'], 1)} µs"
    )
    budget = r["full_commits_per_step"] * r["full_raw_us"]
    ratio = r["full_us"] / budget
    report.rows.append(
        Row(
            "sqlite_full",
            "per step, SQLite synchronous=FULL, µs",
            fmt(r["full_us"]),
            f"{fmt(budget)} = {r['full_commits_per_step']:.2f} commits/step x "
            f"{fmt(r['full_raw_us'])} raw commit",
            ratio,
            "<= 1.3x",
            ratio <= 1.3,
            "engine time (created to completed); raw INSERT+COMMIT on the same file",
        )
    )
    ratio = r["normal_us"] / r["normal_raw_us"]
    report.rows.append(
        Row(
            "sqlite_normal",
            "per step, SQLite synchronous=NORMAL, µs",
            fmt(r["normal_us"]),
            f"{fmt(r['normal_raw_us'], 1)} one raw commit "
            f"({r['normal_commits_per_step']:.2f} commits/step)",
            ratio,
            "<= 3x",
            ratio <= 3,
            "",
        )
    )
    report.rows.append(
        Row(
            "memory",
            "per step, memory storage, µs",
            fmt(r["memory_us"], 1),
            f"{fmt(r['bare_us'], 2)} bare await of the step body",
            None,
            "< 15 µs",
            r["memory_us"] < 15,
            "absolute target; the peer is the floor",
        )
    )


def group_cold(sizes: Sizes, tmp: Path, report: Report) -> None:
    """Fresh processes: import, first 1-step workflow, CLI --help; medians of ``cold_runs``.

    Both sides run with their default configuration in a new project folder
    (``bench/peers/cold_start_helpers.py``; the definitions of ``bench/cold_start.py``).
    """
    n = sizes.cold_runs
    spec = {"group": "cold", "runs": n}
    (tmp / "pw").mkdir()
    (tmp / "dbos").mkdir()
    pw = run_side("pw_side", {**spec, "directory": str(tmp / "pw")}, 600.0)
    db = run_side("dbos_side", {**spec, "directory": str(tmp / "dbos")}, 600.0)
    interpreter = f"bare interpreter (python -c pass): {fmt(pw['python_ms'])} ms"

    def add(key: str, workload: str, figure: str, peer: str, target: float, notes: str) -> None:
        ours, theirs = pw[figure], db[figure]
        report.rows.append(
            Row(
                key,
                workload,
                fmt(ours),
                f"{fmt(theirs)} {peer}",
                theirs / ours,
                f"< {target:.0f} ms",
                ours < target,
                notes,
            )
        )

    add(
        "import",
        "cold: python -c 'import pyworkflow', ms (whole process)",
        "import_ms",
        "import dbos",
        150,
        f"median of {n}; {interpreter}",
    )
    add(
        "first_workflow",
        "cold: first 1-step workflow, start() to get_result(), ms",
        "start_to_result_ms",
        "DBOS launch() + first workflow",
        300,
        "fresh process, default config (SQLite file in a new folder)",
    )
    add(
        "first_workflow_spawn",
        "cold: first 1-step workflow, process spawn to result, ms",
        "spawn_to_result_ms",
        "DBOS",
        300,
        "interpreter and imports included",
    )
    add(
        "cli_help", "cold: pyworkflow --help, ms (whole process)", "help_ms", "dbos --help", 300, ""
    )


def group_celery(sizes: Sizes, tmp: Path, report: Report) -> None:
    """PyWorkflow's Celery executor vs plain chains of the same 5 tasks."""
    r = run_side(
        "celery_side",
        {
            "runs": sizes.celery_runs,
            "workers": sizes.celery_workers,
            "concurrency": sizes.celery_concurrency,
        },
        1500.0,
    )
    ratio = r["pw_rps"] / r["chain_rps"]
    report.rows.append(
        Row(
            "celery",
            f"Celery: {sizes.celery_runs} runs of 5 steps, runs/s",
            fmt(r["pw_rps"], 1),
            f"{fmt(r['chain_rps'], 1)} plain chains of 5 tasks",
            ratio,
            ">= 0.5x",
            ratio >= 0.5,
            f"same redis-server, {sizes.celery_workers} workers x "
            f"{sizes.celery_concurrency} threads; ratio = PyWorkflow / chains",
        )
    )


def group_postgres(sizes: Sizes, tmp: Path, report: Report) -> None:
    """µs per step on a throw-away PostgreSQL: PyWorkflow vs DBOS (fsync on)."""
    from pyworkflow.testing.servers import PostgresServer

    server = PostgresServer()
    try:
        base = f"postgresql://postgres@127.0.0.1:{server.port}"
        common = {"group": "one_workflow_steps", "steps": sizes.steps, "repeats": 1}
        pw_rounds, db_rounds = [], []
        for _ in range(sizes.repeats):  # interleaved, like the sequential rows
            pw_rounds.append(run_side("pw_side", {**common, "storage": f"{base}/postgres"}, 900.0))
            db_rounds.append(run_side("dbos_side", {**common, "url": f"{base}/dbos_bench"}, 900.0))
        pw, db = best_of(pw_rounds), best_of(db_rounds)
    finally:
        server.destroy()
    ratio = db["steps_us"] / pw["steps_us"]
    report.rows.append(
        Row(
            "postgres",
            f"PostgreSQL: 1 workflow of {sizes.steps:,} steps, µs per step",
            fmt(pw["steps_us"]),
            f"{fmt(db['steps_us'])} DBOS on PostgreSQL",
            ratio,
            "> 1x",
            ratio > 1,
            "same throw-away PostgreSQL 15 (fsync on); ratio = DBOS / PyWorkflow",
        )
    )


RUNNERS: dict[str, Callable[[Sizes, Path, Report], None]] = {
    "sequential": group_sequential,
    "sqlite": group_sqlite,
    "cold": group_cold,
    "celery": group_celery,
    "postgres": group_postgres,
}


# ----------------------------------------------------------------------------- output


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("pyworkflow", "dbos", "celery"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} missing")
    spec = importlib.util.find_spec("pyworkflow")
    if spec is not None and spec.origin:
        found.append(f"pyworkflow imported from {Path(spec.origin).parent.parent}")
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        if commit:
            found.append(f"repository at {commit}")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return ", ".join(found)


def ratio_text(row: Row) -> str:
    return "-" if row.ratio is None else f"{row.ratio:.2f}x"


def render(report: Report, markdown: bool) -> str:
    head = ["workload", "PyWorkflow", "peer", "ratio", "target", "result", "notes"]
    cells = [
        [r.workload, r.ours, r.peer, ratio_text(r), r.target, r.verdict, r.notes]
        for r in report.rows
    ]
    lines: list[str] = []
    if markdown:
        lines += [f"- {h}" for h in report.header]
        lines.append("")
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        lines += [""] + [f"- **error**: {e}" for e in report.errors]
    else:
        lines += [*report.header, ""]
        widths = [max(len(x) for x in col) for col in zip(head, *cells, strict=False)]
        for row in [head, ["-" * w for w in widths], *cells]:
            lines.append("  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)).rstrip())
        lines += [f"ERROR: {e}" for e in report.errors]
    return "\n".join(lines).rstrip() + "\n"


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="ROW",
        help=f"run only this row or group (repeatable): {', '.join([*GROUPS, *ROW_GROUP])}",
    )
    parser.add_argument("--postgres", action="store_true", help="add the PostgreSQL row")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args(argv)

    sizes = QUICK if args.quick else FULL
    wanted: list[str] = []
    for name in args.only:
        group = name if name in GROUPS else ROW_GROUP.get(name)
        if group is None:
            parser.error(f"unknown row {name!r}")
        if group not in wanted:
            wanted.append(group)
    if not wanted:
        wanted = [g for g in GROUPS if g != "postgres" or args.postgres]
    wanted.sort(key=GROUPS.index)
    only_rows = {n for n in args.only if n in ROW_GROUP and n not in GROUPS}

    report = Report()
    began = time.perf_counter()
    load_start = os.getloadavg()[0]
    report.header.append(
        f"run: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{'--quick' if args.quick else 'full sizes'}"
    )
    report.header.append(f"machine: {machine()}")
    report.header.append(f"versions: {versions()}")
    with sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="pw-peers-") as tmp:
        tmp_path = Path(tmp)
        os.chmod(tmp_path, 0o755)
        report.header.append(
            f"fsync'd commit measured at the start (WAL, FULL, stdlib sqlite3): "
            f"{fmt(raw_commit_us(tmp_path / 'raw.db'))} µs"
        )
        for group in wanted:
            workdir = tmp_path / group
            workdir.mkdir()
            print(f"[peers] {group} ...", file=sys.stderr, flush=True)
            try:
                RUNNERS[group](sizes, workdir, report)
            except BenchError as exc:
                report.errors.append(f"{group}: {exc}")
    if only_rows:
        report.rows = [r for r in report.rows if r.key in only_rows]
    report.header.append(
        f"bench wall time: {time.perf_counter() - began:.0f} s; 1-minute load average at start "
        f"{load_start:.1f}, at end {os.getloadavg()[0]:.1f} (other jobs on the machine show here)"
    )
    sys.stdout.write(render(report, args.markdown))
    return 1 if report.errors else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("[peers] interrupted; servers and workers stopped", file=sys.stderr)
        sys.exit(130)

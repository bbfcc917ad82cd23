"""Cold-start measurements shared by ``pw_side.py`` and ``dbos_side.py`` (no heavy imports).

Every figure is a median over fresh processes, each with a timeout, in the
environment of the caller minus ``PYWORKFLOW_*`` and ``DBOS_*`` settings.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def clean_env() -> dict[str, str]:
    """This environment without ``PYWORKFLOW_*`` / ``DBOS_*`` settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYWORKFLOW_", "DBOS_"))}


def spawn_wall(argv: list[str], cwd: Path, timeout: float = 60.0) -> float:
    """Wall time of a whole process, spawn to exit, in seconds."""
    began = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=clean_env(), check=True, capture_output=True, timeout=timeout)
    return time.perf_counter() - began


def first_workflow(flow: str, cwd: Path, timeout: float = 60.0) -> tuple[float, float]:
    """A fresh process's first workflow: (spawn to result, start() to result), seconds.

    ``flow`` prints ``{"result_at": time.time(), "inside": seconds}`` as its last line.
    """
    project = Path(tempfile.mkdtemp(dir=cwd))
    script = project / "flow.py"
    script.write_text(flow)
    spawned = time.time()
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=project,
        env=clean_env(),
        check=True,
        capture_output=True,
        timeout=timeout,
    )
    report = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return report["result_at"] - spawned, report["inside"]


def cold_figures(
    directory: str, runs: int, module: str, flow: str, cli: list[str]
) -> dict[str, float]:
    """Medians (ms) over ``runs`` fresh processes, after one untimed run of each."""
    cwd = Path(directory)
    med = statistics.median
    spawn_wall([sys.executable, "-c", f"import {module}"], cwd)  # warm the bytecode caches
    first_workflow(flow, cwd)
    spawn_wall(cli, cwd)
    firsts = [first_workflow(flow, cwd) for _ in range(max(1, runs))]
    return {
        "python_ms": med(spawn_wall([sys.executable, "-c", "pass"], cwd) for _ in range(runs))
        * 1e3,
        "import_ms": med(
            spawn_wall([sys.executable, "-c", f"import {module}"], cwd) for _ in range(runs)
        )
        * 1e3,
        "spawn_to_result_ms": med(f[0] for f in firsts) * 1e3,
        "start_to_result_ms": med(f[1] for f in firsts) * 1e3,
        "help_ms": med(spawn_wall(cli, cwd) for _ in range(runs)) * 1e3,
    }


def cli_argv(name: str) -> list[str]:
    """``name --help`` next to this interpreter, else ``python -m name --help``."""
    script = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    return [script, "--help"] if script else [sys.executable, "-m", name, "--help"]

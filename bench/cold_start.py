"""Cold start (issue 13 Speed): median wall times of fresh processes, in ms.

Targets: ``import pyworkflow`` under 150 ms; a fresh process's first 1-step
workflow (default config: SQLite file storage, local executor, a new temporary
project folder) under 300 ms; ``pyworkflow --help`` under 300 ms.

Rows (each the median of ``--repeat`` fresh processes, default 7):

- ``python -c pass``: the bare interpreter, for scale (site hooks included).
- ``import pyworkflow``: process start to exit.
- ``1-step workflow, process start -> result``: from spawning the process to
  the moment ``get_result`` returned, imports and SQLite file creation included.
- ``1-step workflow, start() -> get_result()``: inside that process.
- ``1-step workflow, process start -> exit``: also counts interpreter shutdown.
- ``pyworkflow --help``: process start to exit.

Measured on the development machine (2 cores shared with other jobs: figures
move by 20-50 % from run to run), 2026-11-28, medians of 7, before (704eb9b)
and after the cold-start commits, the two measured back to back:

========================================== ======== =======
row                                         before   after
========================================== ======== =======
python -c pass                                 43      40
import pyworkflow                             210      40
1-step workflow, process start -> result      592     210
1-step workflow, start() -> get_result()      426      51
1-step workflow, process start -> exit        767     255
pyworkflow --help                             434     229
========================================== ======== =======

Where the "after" time goes (``-X importtime``, a 1-step run): imports of
asyncio/anyio, attrs, loguru, importlib.metadata plus three entry-point scans
(logs, the plugin manager, pluggy) make most of the ~110-150 ms of imports;
the first ``get_runtime()`` ~30-40 ms (plugin manager ~12 ms, creating the
SQLite file ~6-20 ms); ``get_result`` 10-20 ms, most of it its polling sleep.

Run: ``python bench/cold_start.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

FLOW = """
import json, sys, time
T0 = time.time()
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


def _env() -> dict[str, str]:
    """This environment, without PyWorkflow settings and with bytecode caching on.

    A user's interpreter reads cached bytecode; without it (``PYTHONDONTWRITEBYTECODE``
    is set on some machines) every import compiles its source and the figures
    measure the compiler. The warm-up run writes the caches.
    """
    skip = ("PYWORKFLOW_", "PYTHONDONTWRITEBYTECODE")
    return {k: v for k, v in os.environ.items() if not k.startswith(skip)}


def _wall(argv: list[str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=_env(), check=True, capture_output=True)
    return time.perf_counter() - start


def _flow(cwd: str) -> tuple[float, float, float]:
    """(process start -> result, start() -> get_result(), process start -> exit), seconds."""
    project = tempfile.mkdtemp(dir=cwd)
    script = Path(project) / "flow.py"
    script.write_text(FLOW)
    spawned = time.time()
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, str(script)], cwd=project, env=_env(), check=True, capture_output=True
    )
    total = time.perf_counter() - t
    report = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return report["result_at"] - spawned, report["inside"], total


def _median_ms(fn: Callable[[], float], repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat)) * 1000


def main() -> None:
    """Print the median of each row in ms, with its target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    repeat = parser.parse_args().repeat
    script = shutil.which("pyworkflow")
    help_argv = [script, "--help"] if script else [sys.executable, "-m", "pyworkflow", "--help"]
    with tempfile.TemporaryDirectory() as cwd:
        _wall([sys.executable, "-c", "import pyworkflow"], cwd)  # warm the bytecode caches
        _flow(cwd)
        flows = [_flow(cwd) for _ in range(repeat)]
        rows = [
            (
                "python -c pass",
                _median_ms(lambda: _wall([sys.executable, "-c", "pass"], cwd), repeat),
                None,
            ),
            (
                "import pyworkflow",
                _median_ms(lambda: _wall([sys.executable, "-c", "import pyworkflow"], cwd), repeat),
                150,
            ),
            (
                "1-step workflow, process start -> result",
                statistics.median(f[0] for f in flows) * 1000,
                300,
            ),
            (
                "1-step workflow, start() -> get_result()",
                statistics.median(f[1] for f in flows) * 1000,
                300,
            ),
            (
                "1-step workflow, process start -> exit",
                statistics.median(f[2] for f in flows) * 1000,
                None,
            ),
            ("pyworkflow --help", _median_ms(lambda: _wall(help_argv, cwd), repeat), 300),
        ]
    print(f"cold start, median of {repeat} fresh processes ({sys.executable})")
    for name, ms, target in rows:
        verdict = (
            "" if target is None else f"target < {target} ms: {'met' if ms < target else 'NOT met'}"
        )
        print(f"{name:<44} {ms:8.1f} ms   {verdict}")


if __name__ == "__main__":
    main()

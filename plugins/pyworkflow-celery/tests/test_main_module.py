"""Issue 12, finding 11: a workflow defined in the starting script is refused at ``start()``.

Celery workers cannot import ``__main__``, so such a run would stay pending
forever; ``start()`` says so instead, and the advice it gives works.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from pyworkflow_celery.testing import CeleryCluster as Cluster

from pyworkflow import list_runs

#: The seed README's basic example, run as a script with ``executor = "celery"``.
SCRIPT = textwrap.dedent(
    """
    from pyworkflow import workflow, step, start, sleep

    @step()
    async def script_item(item_id: int):
        return f"Processed {item_id}"

    @workflow
    async def script_workflow(item_id: int):
        result = await script_item(item_id)
        await sleep("5m")
        return result

    run_id = start(script_workflow, item_id=123)
    print("started", run_id)
    """
)

#: The fix the error suggests: the workflow lives in a module the workers import.
FIXED_SCRIPT = textwrap.dedent(
    """
    from pyworkflow import get_result, start
    from celery_flows import my_workflow

    print("result:", get_result(start(my_workflow, item_id=7, pause="0.5s"), timeout=60))
    """
)


def run_script(cluster: Cluster, tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "main.py"
    script.write_text(text)
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_workflow_in_the_starting_script_is_refused_at_start(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.worker("w1")
    cluster.beat()

    out = run_script(cluster, tmp_path, SCRIPT)

    assert out.returncode != 0, out.stdout
    assert "started" not in out.stdout
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("pyworkflow.errors.ConfigError: workflow 'script_workflow'"), last
    assert f"defined in the script {tmp_path / 'main.py'} (module __main__)" in last
    assert "'celery' executor" in last and "cannot import __main__" in last
    assert "from workflows import script_workflow" in last
    assert 'modules = ["workflows"]' in last and "PYWORKFLOW_MODULES=workflows" in last
    # nothing was recorded: no run is left pending
    assert list_runs().runs == []


def test_the_suggested_fix_runs_on_the_workers(cluster: Cluster, tmp_path: Path) -> None:
    cluster.worker("w1")

    out = run_script(cluster, tmp_path, FIXED_SCRIPT)

    assert out.returncode == 0, out.stderr[-3000:]
    assert "result: Processed 7" in out.stdout

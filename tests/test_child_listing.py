"""Listing a run's children: client, CLI and HTTP API (groundwork for child workflows)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pyworkflow
from pyworkflow.models import utcnow
from pyworkflow.runtime import get_runtime
from pyworkflow.testing.storage_suite import make_run


def _family(storage_url: str) -> None:
    """A parent, three children of it, and one run of another parent, in storage."""
    pyworkflow.configure(storage=storage_url, embedded_worker=False)
    runtime = get_runtime()
    base = utcnow()
    rows = [make_run("parent-1", created_at=base)]
    rows += [
        make_run(f"kid-{i}", parent_run_id="parent-1", created_at=base + timedelta(seconds=i + 1))
        for i in range(3)
    ]
    rows.append(make_run("stranger", parent_run_id="parent-2", created_at=base))
    for row in rows:
        runtime.call(runtime.storage.create_run, row, [])


def test_the_client_lists_the_children_of_a_run(tmp_path: Path) -> None:
    _family(f"sqlite:///{tmp_path / 'pw.db'}")
    page = pyworkflow.list_runs(parent="parent-1")
    assert [r.run_id for r in page.runs] == ["kid-2", "kid-1", "kid-0"]
    info = pyworkflow.get_run("kid-0")
    assert info.parent_run_id == "parent-1"
    assert pyworkflow.get_run("parent-1").parent_run_id is None


def test_runs_list_parent_on_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    _family(url)
    pyworkflow.runtime.shutdown()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env["PYWORKFLOW_STORAGE"] = url
    out = subprocess.run(
        [sys.executable, "-m", "pyworkflow", "runs", "list", "--parent", "parent-1", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["run_id"] for r in rows] == ["kid-2", "kid-1", "kid-0"]
    assert {r["parent_run_id"] for r in rows} == {"parent-1"}

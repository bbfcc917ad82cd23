"""Schemathesis (CLI, every phase) against the live server's ``/openapi.json``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pyworkflow import RunStatus, get_result, start
from tests.server import workflows as wf
from tests.server.conftest import TOKEN, ServerFactory, wait_status

# A forged cursor is schema-valid (an opaque string) yet rightly rejected with 422,
# so "schema-valid data must be accepted" does not hold for GET /api/runs.
EXCLUDED = "positive_data_acceptance"


@pytest.mark.slow
@pytest.mark.parametrize("api_token", [None, TOKEN])
def test_schemathesis_finds_no_5xx_and_no_schema_violation(
    make_server: ServerFactory, tmp_path: Path, api_token: str | None
) -> None:
    base = make_server(api_token=api_token)
    # data for the API to return: a finished run, a run waiting on a live schema hook
    done = start(wf.greet, "st")
    get_result(done, timeout=10)
    # a stored lone surrogate (through the Python API) on every page the API returns
    surrogate = start(wf.greet, "\ud800")
    get_result(surrogate, timeout=10)
    live = start(wf.collect, "st:live", 10**9, True)
    wait_status(live, RunStatus.SUSPENDED)

    config = tmp_path / "schemathesis.toml"
    config.write_text(
        '[[operations]]\ninclude-name = "POST /hooks/{token}"\nparameters = { token = "st:live" }\n'
    )
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{base}/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        EXCLUDED,
        "--max-examples",
        "20",
        "--seed",
        "20240601",
        "--no-color",
    ]
    if api_token is not None:
        command += ["--header", f"Authorization: Bearer {api_token}"]
    done_process = subprocess.run(
        command, capture_output=True, text=True, timeout=180, cwd=tmp_path, check=False
    )
    output = done_process.stdout + done_process.stderr
    assert done_process.returncode == 0, output[-6000:]
    assert "18/18" in output  # every operation was tested

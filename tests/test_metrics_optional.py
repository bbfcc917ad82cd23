"""prometheus_client is optional: PyWorkflow imports and runs without it, and turning metrics on
without it is a ConfigError that names the extra to install (docs/observability.md)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["prometheus_client"] = None  # as if not installed: importing it fails

    import pyworkflow, pyworkflow.metrics, pyworkflow.server
    from pyworkflow.errors import ConfigError
    from pyworkflow.server import create_app

    pyworkflow.configure(storage="memory://")
    create_app()
    pyworkflow.runtime.get_runtime()  # metrics off: nothing needs prometheus_client
    print("off ok")
    pyworkflow.configure(metrics={"enabled": True})
    try:
        pyworkflow.runtime.get_runtime()
    except ConfigError as exc:
        print("refused:", exc)
    """
)


def test_pyworkflow_works_without_prometheus_client(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "off ok"
    assert lines[1].startswith("refused: metrics are on")
    assert "pip install 'pyworkflow[metrics]'" in lines[1]

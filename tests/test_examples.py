"""Every example in examples/ (the seed README's, sleeps shortened) runs to completion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"

EXPECTED = {
    "quickstart.py": "result: Processed 123",
    "basic.py": "Processed 123",
    "oop_basic.py": "Hello, Alice!",
    "parallel.py": "'status': 'shipped'",
    "onboarding.py": "onboarded",
    "error_handling.py": "not found: Resource not found",
    "approval.py": "order-1 shipped (approved by ana)\norder-2: no answer before the deadline",
}


def test_every_example_is_covered() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_on_the_embedded_default(name: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=tmp_path,  # default storage: .pyworkflow/pyworkflow.db under the cwd
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert EXPECTED[name] in out.stdout, out.stdout
    assert (tmp_path / ".pyworkflow" / "pyworkflow.db").exists()


def test_an_example_that_needs_httpx_says_how_to_install_it(tmp_path: Path) -> None:
    """After the README's install alone (no httpx), the example explains instead of crashing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    blocker = tmp_path / "block" / "httpx.py"
    blocker.parent.mkdir()
    blocker.write_text("raise ImportError('httpx is not installed (blocked by the test)')\n")
    env["PYTHONPATH"] = str(blocker.parent)
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "error_handling.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "pip install httpx" in out.stderr
    assert "Traceback" not in out.stderr

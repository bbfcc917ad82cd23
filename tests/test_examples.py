"""Every example in examples/ (the seed README's, sleeps shortened) runs to completion."""

from __future__ import annotations

import os
import re
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
    "patched.py": "order 1: shipped for 10 (started on version 1: the old branch)\n"
    "order 2: shipped for 15 (started on version 2: the patched branch)",
    "fanout.py": "charged: book:1200, pen:150\nfailed: nothing to charge for gift\n"
    "audit: audit-fee:1\n4 child runs of ",
    "queues.py": "sent to vip\nvip went before the runs waiting with it: True",
    "schedules.py": "one per tick: True\npulses distinct and on even seconds: True",
    "streaming.py": "[########] 8/8 documents, 108 words\nindexed words: 108",
    "checkpoints.py": "attempt 1: starting at record 0\nattempt 2: starting at record 300\n"
    "imported 500 records, total 124750, the retry resumed at record 300",
    "transient.py": "quote for 3 items: 36.0 (priced after 2 attempts)",
    "shield.py": "released hotel-rome\nreleased flight-rome\nrun cancelled after 2 compensations",
    "init_project.py": "created: workflows.py, test_workflows.py, pyproject.toml\n"
    "the example: result: 'receipt for order-1: 42 EUR'\nits tests: 2 passed\n"
    "a second init: refused",
}

#: Examples that store nothing in the directory they run in (init_project.py scaffolds in a
#: temporary directory of its own).
NO_LOCAL_DB = {"init_project.py"}


#: Example applications in a directory of their own (app.py + tests): what app.py prints.
APPS = {
    "subscriptions": (
        "{'status': 'active', 'plan': 'pro', 'payment': 'pay-ana-2900'",
        "{'status': 'ended', 'reason': 'no answer'",
    ),
}


def test_every_example_is_covered() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(EXPECTED)
    assert {p.parent.name for p in EXAMPLES.glob("*/app.py")} == set(APPS)


def _clean_env() -> dict[str, str]:
    """The environment without PyWorkflow settings or pytest options of the outer run."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYWORKFLOW_", "PYTEST_"))}


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
    assert (tmp_path / ".pyworkflow" / "pyworkflow.db").exists() != (name in NO_LOCAL_DB)


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


@pytest.mark.parametrize("name", sorted(APPS))
def test_example_app_runs_for_real(name: str, tmp_path: Path) -> None:
    """The app itself (durations shortened by its __main__) on the embedded default."""
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / name / "app.py")],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    for line in APPS[name]:
        assert line in out.stdout, out.stdout
    assert (tmp_path / ".pyworkflow" / "pyworkflow.db").exists()


@pytest.mark.parametrize("name", sorted(APPS))
def test_example_app_tests_pass_on_the_harness(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The app's own tests (a month of virtual time each) pass, in well under a second.

    Issue 14 asks for the example's test file to run in under 1 s and for the
    figure to be printed: pytest's own duration of that file is printed to the
    terminal and bounded loosely (10 s), so a slow shared machine does not fail it
    while a test that really waits on a 30-day sleep or a retry back-off would.
    """
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLES / name)],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # "3 passed in 0.12s" (or "3 passed, 1 warning in ..."): nothing skipped, failed or xfailed
    summary = re.search(r"^(\d+) passed(?:, \d+ warnings?)? in ([\d.]+)s", out.stdout, re.M)
    assert summary is not None, out.stdout
    passed, seconds = int(summary[1]), float(summary[2])
    assert passed >= 3
    with capsys.disabled():
        print(f"\nexamples/{name}: {passed} tests passed in {seconds:.2f} s (pytest's own figure)")
    assert seconds < 10, f"examples/{name}'s tests took {seconds:.2f} s"
    assert not (tmp_path / ".pyworkflow").exists()  # the harness wrote nothing to real storage


def test_the_sample_application_in_docs_is_the_example_code() -> None:
    """docs/testing.md quotes examples/subscriptions verbatim, so the two cannot drift apart."""
    text = (EXAMPLES.parent / "docs" / "testing.md").read_text()
    section = text.split("\n## The sample application\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```$", section, re.M | re.S)
    app = EXAMPLES / "subscriptions"
    sources = [(app / "app.py").read_text(), (app / "test_app.py").read_text()]
    assert len(blocks) == 2
    for block in blocks:
        assert any(block in source for source in sources), block[:200]

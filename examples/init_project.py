"""`pyworkflow init` end to end: scaffold a project, then run the two commands it prints.

The project is made in a temporary directory (``init`` writes into the current
directory and never overwrites anything), so running this example leaves no
files behind. See docs/cli/init.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path


def sh(*args: str, cwd: Path) -> str:
    """Run a command in the project; its output (it must succeed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYWORKFLOW_", "PYTEST_"))}
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "shop"
        project.mkdir()
        printed = sh(sys.executable, "-m", "pyworkflow", "init", cwd=project)
        created = [line.split()[1] for line in printed.splitlines() if line.startswith("created")]
        print("created:", ", ".join(created))
        # the two commands init printed, each on the line after its label
        lines = [line.strip() for line in printed.splitlines()]
        run_cmd = lines[lines.index("Run the example:") + 1].split()
        test_cmd = lines[lines.index("Run its tests:") + 1].split()
        assert run_cmd[0] == "pyworkflow" and test_cmd[:3] == ["python", "-m", "pytest"]
        ran = sh(sys.executable, "-m", "pyworkflow", *run_cmd[1:], cwd=project)
        print("the example:", ran.strip().splitlines()[-1])
        tested = sh(sys.executable, *test_cmd[1:], "-q", "-p", "no:cacheprovider", cwd=project)
        print("its tests:", tested.strip().splitlines()[-1].split(" in ")[0])
        again = subprocess.run(
            [sys.executable, "-m", "pyworkflow", "init"],
            cwd=project,
            capture_output=True,
            text=True,
        )
        print("a second init:", "refused" if again.returncode != 0 else "overwrote!")


if __name__ == "__main__":
    main()

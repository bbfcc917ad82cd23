"""Every test starts with no runtime, no ``PYWORKFLOW_*`` variables, in a temporary cwd."""

from __future__ import annotations

from pyworkflow.testing.fixtures import isolated_runtime  # noqa: F401  (autouse)

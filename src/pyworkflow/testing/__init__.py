"""Test harness shipped with PyWorkflow: the storage and engine suites for any backend."""

from __future__ import annotations

from pyworkflow.testing.engine_suite import EngineConformance
from pyworkflow.testing.storage_suite import StorageConformance

__all__ = ["EngineConformance", "StorageConformance"]

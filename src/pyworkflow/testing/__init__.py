"""Test harness shipped with PyWorkflow: the storage conformance suite for any backend."""

from __future__ import annotations

from pyworkflow.testing.storage_suite import StorageConformance

__all__ = ["StorageConformance"]

"""Storage backends: the interface and the built-in implementations."""

from __future__ import annotations

from pyworkflow.storage.base import Storage

__all__ = ["Storage"]

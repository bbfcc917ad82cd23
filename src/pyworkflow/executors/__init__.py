"""Executors: where activations and step bodies run."""

from __future__ import annotations

from pyworkflow.executors.base import Executor

__all__ = ["Executor"]

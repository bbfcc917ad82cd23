"""The activation's part in versioning markers (patched, deprecate_patch) (issue 15)."""

from __future__ import annotations

from pyworkflow.engine.state import ActivationState

__all__ = ["Markers"]


class Markers(ActivationState):
    """Mixin of :class:`~pyworkflow.engine.activation.Activation`: versioning markers."""

"""The activation's part in the workflow timeout (issue 15)."""

from __future__ import annotations

from pyworkflow.engine.state import ActivationState

__all__ = ["Deadline"]


class Deadline(ActivationState):
    """Mixin of :class:`~pyworkflow.engine.activation.Activation`: the workflow timeout."""

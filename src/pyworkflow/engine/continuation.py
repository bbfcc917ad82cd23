"""The activation's part in continue-as-new (issue 15)."""

from __future__ import annotations

from pyworkflow.engine.state import ActivationState

__all__ = ["Continuation"]


class Continuation(ActivationState):
    """Mixin of :class:`~pyworkflow.engine.activation.Activation`: continue-as-new."""

"""EngineConformance cases for continue-as-new (issue 15).

Mixed into :class:`~pyworkflow.testing.engine_suite.EngineConformance`: every
backend and executor plugin runs them. Tests use the class's fixtures
(``pw`` configures a fast runtime on the backend under test).
"""

from __future__ import annotations

__all__ = ["ContinueAsNewCases"]


class ContinueAsNewCases:
    """The continue-as-new checks of the engine conformance suite."""

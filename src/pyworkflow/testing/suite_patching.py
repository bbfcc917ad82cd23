"""EngineConformance cases for patched() and deprecate_patch() versioning markers (issue 15).

Mixed into :class:`~pyworkflow.testing.engine_suite.EngineConformance`: every
backend and executor plugin runs them. Tests use the class's fixtures
(``pw`` configures a fast runtime on the backend under test).
"""

from __future__ import annotations

__all__ = ["PatchingCases"]


class PatchingCases:
    """The versioning-marker checks (patched, deprecate_patch) of the engine conformance suite."""

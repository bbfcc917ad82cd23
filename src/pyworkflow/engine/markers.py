"""The activation's part in versioning markers (patched, deprecate_patch) (issue 15).

``patched(id)`` is a durable operation with a correlation id, decided once per
run and patch id:

- the log holds this patch's ``marker_recorded`` at the next id: the marker is
  consumed and the answer is ``True``;
- the log holds another operation there (a history recorded before the patch,
  or a marker of another patch: the newest-first ``if patched("v3") ... elif
  patched("v2")`` chain): ``False``, and that operation is left for the next
  call, which takes the same id;
- the log holds nothing there: a run that has not been here before records a
  marker and gets ``True``, unless its log completed the run already (a
  completed history replayed by ``runs replay``: the run ended without it).

``deprecate_patch(id)`` records nothing and consumes this patch's marker if the
log holds it at the next id, so both kinds of history replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pyworkflow.engine.state import _RUN_ENDS, ActivationState, _Discarded
from pyworkflow.models import Event, EventType, NewEvent, Run

if TYPE_CHECKING:
    from pyworkflow.runtime import Runtime

__all__ = ["PATCH", "Markers"]

#: The ``kind`` of a patch's ``marker_recorded`` payload.
PATCH = "patch"


class Markers(ActivationState):
    """Mixin of :class:`~pyworkflow.engine.activation.Activation`: versioning markers."""

    def __init__(self, runtime: Runtime, run: Run, history: Sequence[Event], owner: str) -> None:
        super().__init__(runtime, run, history, owner)
        #: each patch id's answer in this run, decided by its first call
        self.patches: dict[str, bool] = {}
        ends = [e.type for e in self.history if e.type in _RUN_ENDS]
        #: the log completed the run: nothing after its last operation is new
        self.log_completed = bool(ends) and ends[-1] == EventType.WORKFLOW_COMPLETED

    def _marker_here(self, patch_id: str) -> bool | None:
        """This patch's marker at the next id (True), another operation (False), nothing (None)."""
        if self.discarded:
            raise _Discarded
        recorded = self.by_cid.get(str(self.counter + 1))
        if not recorded:
            return None
        first = recorded[0]
        return (
            first.type == EventType.MARKER_RECORDED
            and first.payload.get("kind") == PATCH
            and first.payload.get("name") == patch_id
        )

    def patched(self, patch_id: str) -> bool:
        known = self.patches.get(patch_id)
        if known is not None:
            return known
        here = self._marker_here(patch_id)
        if here is None:
            answer = not self.log_completed
            if answer:  # live: the run reaches this point for the first time
                self.counter += 1
                payload = {"kind": PATCH, "name": patch_id}
                self.buffer.append(NewEvent(EventType.MARKER_RECORDED, str(self.counter), payload))
        else:
            answer = here
            if here:
                self.counter += 1  # the marker is consumed
        self.patches[patch_id] = answer
        return answer

    def deprecate_patch(self, patch_id: str) -> None:
        if patch_id in self.patches:
            return
        if self._marker_here(patch_id):
            self.counter += 1
        self.patches[patch_id] = True

"""What an activation records: its buffered events flushed to the log, conflicts rebased."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import attrs

from pyworkflow.engine.limits import EventLimits
from pyworkflow.engine.state import (
    _RUN_ENDS,
    _STEP_FACTS,
    _LostOwnership,
    _Restart,
    is_external,
)
from pyworkflow.errors import ConcurrencyError
from pyworkflow.models import EventType, NewEvent, RunPatch


class Recording(EventLimits):
    """Flushes the activation's buffered events to the log; handles append conflicts."""

    if TYPE_CHECKING:  # engine/children.py (a mixin of the same activation)

        async def _children_recorded(self, events: list[NewEvent]) -> None: ...

    async def _flush(self, patch: RunPatch | None = None) -> None:
        if self.pending_patch is not None:
            patch = patch or self.pending_patch
            if patch.status is None:
                patch = attrs.evolve(patch, status=self.pending_patch.status)
            self.pending_patch = None
        if self.chunks:
            await self._store_chunks()
        if not self.buffer and patch is None:
            return
        if patch is None or patch.status is None or not patch.status.is_terminal:
            self._check_event_limit(len(self.buffer))  # engine/limits.py; an end is never refused
        events, self.buffer = self.buffer, []
        before = self.seq
        try:
            self.seq = await self.journal.append(
                self.run_id, self.seq, events, patch, owner=self.owner, workflow=self.workflow_name
            )
        except ConcurrencyError:
            await self._rebase(events)
        if self.seq > self.event_soft_limit:
            self._note_event_count(before)
        if self.to_create or self.to_cancel:  # engine/children.py: after their record
            with anyio.CancelScope(shield=True):  # a flush that released the lease is no stop
                await self._children_recorded(events)
        if self.hooks:
            for event in events:
                if event.type == EventType.HOOK_CREATED:
                    self.hooks[str(event.correlation_id)].durable = True

    async def _store_chunks(self) -> None:
        """Store the chunks workflow code wrote (before the events that follow them)."""
        chunks, self.chunks = self.chunks, []
        for name, data, index in chunks:
            await self.storage.append_stream_chunk(self.run_id, name, data, index=index)

    async def _rebase(self, events: list[NewEvent]) -> None:
        """After a conflict: keep the step outcomes in ``events`` nobody else dealt with.

        Re-reads what was appended since this activation's last append. Each
        step outcome (completed, failed, retrying) is appended at the new end
        of the log unless those appends end or retry the run, or carry the same
        step (another attempt of it, or its outcome): a finished result is not
        thrown away because the lease lapsed while the step ran, and a step is
        never settled twice.

        If only external events came in (cancellation, hook payloads, dispatched
        or late step events), the activation replays again (``_Restart``).
        Otherwise another worker has taken the run over: the outcomes kept are
        marked ``"late": true``, which makes them external for that worker (it
        replays them in instead of stopping), and this activation stops
        (``_LostOwnership``).
        """
        facts = [e for e in events if e.type in _STEP_FACTS]
        touched: set[str | None] = set()
        taken = ended = False
        while True:
            newer = await self.storage.get_events(self.run_id, after_seq=self.seq)
            if newer:
                self.seq = newer[-1].seq
            taken = taken or not all(is_external(e) for e in newer)
            ended = ended or any(e.type in _RUN_ENDS for e in newer)
            touched.update(e.correlation_id for e in newer)
            kept = [] if ended else [e for e in facts if e.correlation_id not in touched]
            if taken:
                kept = [attrs.evolve(e, payload={**e.payload, "late": True}) for e in kept]
            if kept:
                try:
                    self.seq = await self.journal.append(
                        self.run_id, self.seq, kept, owner=self.owner
                    )
                except ConcurrencyError:
                    continue
            recorded = {e.correlation_id for e in kept}
            for fact in facts:
                log = self.log.bind(step_id=fact.correlation_id)
                what = f"step {fact.payload.get('name')!r} attempt {fact.payload.get('attempt')}"
                if fact.correlation_id not in recorded:
                    why = "the run ended" if ended else "another attempt of it was recorded"
                    log.warning("{} finished after {}; its outcome is dropped", what, why)
                elif taken:
                    log.warning(
                        "{} finished after another worker took the run over; "
                        "its outcome is recorded for that worker",
                        what,
                    )
            raise _LostOwnership if taken else _Restart

    async def _check_external(self) -> None:
        run = await self.storage.get_run(self.run_id)
        if run.last_seq != self.seq:
            await self._rebase(self.buffer)

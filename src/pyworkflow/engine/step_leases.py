"""Dispatched-step leases: handing recorded steps to the executor and finding lost ones."""

from __future__ import annotations

import anyio

from pyworkflow.engine.state import ActivationState, queued_owner
from pyworkflow.models import utcnow


class StepLeases(ActivationState):
    """Steps dispatched to other workers: hand them over, find the lost ones."""

    async def _dispatch(self) -> None:
        """Hand the steps just recorded as scheduled to the executor."""
        ops, self.to_dispatch = self.to_dispatch, []
        if not ops:
            return
        until = utcnow() + self.dispatch_timeout
        if len(ops) == 1:
            await self.storage.set_step_lease(
                self.run_id, ops[0].cid, queued_owner(ops[0].attempt), until
            )
        else:  # at once: a storage that groups concurrent writes commits them together
            async with anyio.create_task_group() as tg:
                for op in ops:
                    tg.start_soon(
                        self.storage.set_step_lease,
                        self.run_id,
                        op.cid,
                        queued_owner(op.attempt),
                        until,
                    )
        executor = self.runtime.executor
        steps = [(op.cid, op.attempt) for op in ops]
        if executor.wants_step_definitions:  # e.g. Ray: a step's resources pick its worker
            definitions = {op.cid: op.definition for op in ops if op.definition is not None}
            await executor.dispatch_steps(self.run_id, steps, definitions=definitions)
        else:
            await executor.dispatch_steps(self.run_id, steps)
        self.log.debug("dispatched {} step(s)", len(ops))

    async def _check_dispatched(self) -> None:
        """Find which dispatched steps are still in flight; lost ones run again."""
        leases = await self.storage.get_step_leases(self.run_id)
        now = utcnow()
        for cid, lease in leases.items():
            op = self.open.get(cid)
            if op is None or not op.remote:
                # settled (or retrying): the lease is left over
                await self.storage.set_step_lease(
                    self.run_id, cid, None, None, if_owner=lease.owner
                )
        for cid, op in self.open.items():
            if not op.remote:
                continue
            current = leases.get(cid)
            if current is not None and current.until > now:
                self.step_deadlines[cid] = current.until
            elif not op.started:
                # no worker took it (its message was lost, or no node has its resources
                # yet): send the same attempt again; it spends nothing of the retry budget,
                # and whichever message a worker takes first runs it (the lease decides)
                self.log.bind(step_id=cid).warning(
                    "dispatched step attempt {} was not started within the dispatch timeout;"
                    " sending it again",
                    op.attempt,
                )
                self.to_dispatch.append(op)
            else:
                self.log.bind(step_id=cid).warning(
                    "dispatched step attempt {} was lost (its worker's lease expired);"
                    " dispatching the next attempt",
                    op.attempt,
                )
                op.remote = False

"""The activation's part in ``shield()``: cancellation deferred while a shield is open.

A run's cancellation (``cancel(run_id)``: ``cancel_requested`` in its log) is
delivered into the workflow when replay reaches that event, in log order
(:meth:`Replay._deliver <pyworkflow.engine.replay.Replay._deliver>`). While a
``shield()`` block is open anywhere in the workflow, the delivery is
deferred: the steps, sleeps, hooks and child runs the workflow awaits go on,
and the cancellation is delivered when the outermost shield block exits (a
``CancelledError`` raised by the ``async with`` itself when the workflow's main
task exits it, else at the workflow's next await). Whether a shield is open
is a fact of the workflow code and the log alone (the code entered the block
before replay delivered the cancellation), so a replay after a crash inside a
shielded cleanup continues the cleanup rather than cancelling it.

What a shield does not defer: the workflow timeout (the run ends at its
deadline, shield or not), a failure of the run, and a terminate by a
parent's close policy (which ends the run without delivering anything).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pyworkflow.engine.state import ActivationState, _Discarded
from pyworkflow.models import Event

if TYPE_CHECKING:
    from pyworkflow.models import Run
    from pyworkflow.runtime import Runtime

__all__ = ["Shielding"]


class Shielding(ActivationState):
    """Mixin of :class:`~pyworkflow.engine.activation.Activation`: ``shield()`` blocks."""

    def __init__(self, runtime: Runtime, run: Run, history: Sequence[Event], owner: str) -> None:
        super().__init__(runtime, run, history, owner)
        #: shield blocks open in the workflow (nested and concurrent ones add up)
        self.shields = 0
        #: a cancellation arrived while a shield was open: delivered when the last one exits
        self.cancel_deferred = False

    def _cancel_workflow(self) -> None:
        """Deliver the run's cancellation into the workflow, or defer it while shielded."""
        assert self.root is not None
        if self.shields:
            if not self.cancel_deferred:
                self.log.info("cancellation deferred until the shield() block exits")
            self.cancel_deferred = True
            return
        self.log.info("cancellation delivered into the workflow")
        self.root.cancel()

    def shield_enter(self) -> None:
        """A ``shield()`` block opens."""
        if self.discarded:
            raise _Discarded
        self.shields += 1

    def shield_exit(self, raising: bool) -> bool:
        """A ``shield()`` block closes; True: the block raises the deferred cancellation.

        ``raising`` says whether an exception already leaves the block; then
        (and when the block runs in another task than the workflow's main
        one) the main task is cancelled instead, at its next await.
        """
        if self.discarded:
            raise _Discarded
        self.shields -= 1
        if self.shields or not self.cancel_deferred:
            return False
        self.cancel_deferred = False
        root = self.root
        if root is None or root.done():
            return False
        self.log.info("shield() block exited: cancellation delivered into the workflow")
        if not raising and asyncio.current_task() is root:
            return True
        root.cancel()
        return False

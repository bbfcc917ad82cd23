"""The engine: activations replay a run's log, run new work, and suspend or end the run.

One activation is an :class:`~pyworkflow.engine.activation.Activation`, composed of
one mixin per job over :class:`~pyworkflow.engine.state.ActivationState`:

- :mod:`~pyworkflow.engine.context`: what workflow code calls (steps, sleeps, hooks, values);
- :mod:`~pyworkflow.engine.replay`: delivering the log's outcomes in order, divergence,
  :func:`check_replay`'s :class:`ReplayReport`;
- :mod:`~pyworkflow.engine.live`: live scheduling after replay, suspension and the end;
- :mod:`~pyworkflow.engine.recording`: flushing buffered events, rebasing after a conflict;
- :mod:`~pyworkflow.engine.step_leases`: dispatched steps and their leases;
- :mod:`~pyworkflow.engine.hook_timeouts`: hooks created with a ``timeout`` (their timers);
- :mod:`~pyworkflow.engine.shielding`: ``shield()`` blocks, which defer the run's cancellation;
- :mod:`~pyworkflow.engine.limits`: the run's event limits, checked at each flush;
- :mod:`~pyworkflow.engine.activation`: the entry points workers call.

Every write to a run's log, by the engine, the client or :mod:`pyworkflow.dispatch`,
goes through :class:`~pyworkflow.engine.journal.Journal` (``runtime.journal``), which
also tells observers and the executor.
"""

from __future__ import annotations

from pyworkflow.engine.activation import (
    Activation,
    _fail_corrupt,
    activate,
    back_off,
    check_replay,
    run_activation,
)
from pyworkflow.engine.journal import Journal
from pyworkflow.engine.replay import ReplayReport
from pyworkflow.engine.state import is_external, queued_owner

__all__ = [
    "Activation",
    "Journal",
    "ReplayReport",
    "_fail_corrupt",
    "activate",
    "back_off",
    "check_replay",
    "is_external",
    "queued_owner",
    "run_activation",
]

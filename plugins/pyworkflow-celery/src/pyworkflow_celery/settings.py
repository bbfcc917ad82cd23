"""``[tool.pyworkflow.celery]``: the Celery executor's options."""

from __future__ import annotations

import attrs

from pyworkflow.config import Settings
from pyworkflow.plugin_options import (
    option_bool,
    option_names,
    option_optional_text,
    option_seconds,
    option_text,
    parse_plugin_table,
)

__all__ = ["CelerySettings"]


@attrs.frozen(kw_only=True)
class CelerySettings:
    """Options of the Celery executor, from ``[tool.pyworkflow.celery]``.

    Every option can also come from ``PYWORKFLOW_CELERY__<OPTION>`` or
    ``configure(celery={...})``.
    """

    #: Celery broker URL.
    broker_url: str = "redis://127.0.0.1:6379/0"
    #: Celery result backend; PyWorkflow keeps results in its storage, so none by default.
    result_backend: str | None = None
    #: Queue of activations (replays of workflow code): light, short tasks.
    workflow_queue: str = "pyworkflow.workflows"
    #: Queue of step bodies.
    step_queue: str = "pyworkflow.steps"
    #: Seconds between sweeps (Celery beat) for due timers, expired leases and lost steps.
    sweep_interval: float = 5.0
    #: Timers due within this many seconds get a Celery message with ``eta``;
    #: later ones are left to the sweep (Redis redelivers long-``eta`` messages).
    eta_horizon: float = 600.0
    #: Seconds a dispatched step may wait in the queue before it is sent again.
    dispatch_timeout: float = 300.0
    #: Whether an activation whose workflow waits on one ready step and nothing
    #: else runs that step on its own worker (recording ``step_started`` and the
    #: outcome in its log) instead of sending it to ``step_queue``. Several ready
    #: steps (``gather``) always go to the step queue, and a worker that does not
    #: consume ``step_queue`` (``-Q`` naming the workflow queue only) never runs
    #: steps inline. ``false`` sends every step body to the step queue.
    inline_steps: bool = True
    #: Extra modules the workers import (besides ``modules`` of ``[tool.pyworkflow]``).
    modules: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> CelerySettings:
        """Parse the ``celery`` plugin table; a bad key or value is a ConfigError naming it."""
        values = parse_plugin_table(
            settings,
            "celery",
            {
                "broker_url": option_text,
                "result_backend": option_optional_text,
                "workflow_queue": option_text,
                "step_queue": option_text,
                "sweep_interval": option_seconds,
                "eta_horizon": option_seconds,
                "dispatch_timeout": option_seconds,
                "inline_steps": option_bool,
                "modules": option_names,
            },
        )
        return cls(**values)

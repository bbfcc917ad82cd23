"""The engine is a package of modules named for their jobs, none of them long."""

from __future__ import annotations

from pathlib import Path

import pyworkflow.engine as engine
from pyworkflow.engine.activation import Activation
from pyworkflow.engine.context import WorkflowCalls
from pyworkflow.engine.live import Live
from pyworkflow.engine.recording import Recording
from pyworkflow.engine.replay import Replay
from pyworkflow.engine.state import ActivationState
from pyworkflow.engine.step_leases import StepLeases

PACKAGE = Path(engine.__file__).parent


def test_no_engine_module_is_over_400_lines() -> None:
    lengths = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert {"activation.py", "context.py", "journal.py", "live.py", "replay.py"} <= set(lengths)
    assert {name: n for name, n in lengths.items() if n > 400} == {}


def test_activation_is_composed_of_one_mixin_per_job() -> None:
    for job in (WorkflowCalls, Replay, Live, Recording, StepLeases):
        assert issubclass(Activation, job)
        assert issubclass(job, ActivationState)


def test_the_package_re_exports_what_callers_import() -> None:
    for name in (
        "Activation",
        "ReplayReport",
        "activate",
        "check_replay",
        "is_external",
        "queued_owner",
        "run_activation",
    ):
        assert name in engine.__all__
        assert getattr(engine, name) is not None
    assert engine.queued_owner(3) == "queued:3"

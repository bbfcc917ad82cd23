"""The engine conformance suite with the Ray executor, on the session's two-node cluster.

This process's embedded worker (executor ``ray``) claims the runs and sends
each activation to a Ray worker process as a Ray task (where lone steps run;
steps awaited together run as Ray tasks of their own); the Ray workers
import the suite's modules. SQLite storage in the test's temp dir.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from ray_cluster import RAY_ENV, RayCluster, disconnect_from_ray

from pyworkflow.testing import EngineConformance

#: The modules of the suite's workflows and steps, imported by Ray worker processes.
SUITE_MODULES = [
    "pyworkflow.testing.engine_suite",
    "pyworkflow.testing.suite_children",
    "pyworkflow.testing.suite_patching",
    "pyworkflow.testing.suite_timeouts",
    "pyworkflow.testing.suite_continuation",
    "pyworkflow.testing.suite_checkpoint_engine",
]

#: A step body that appends to the suite's in-process ``calls`` list runs in a Ray
#: worker process here: the list the test reads, in this process, stays empty.
_IN_PROCESS_CALLS = (
    "its step records into the suite's in-process `calls` list, which a Ray worker "
    "process cannot reach (the outcome is checked on Ray by test_ray_seed_examples and "
    "test_ray_distribution, which count executions through files)"
)
#: The gather cases check that both steps started before either completed: on Ray the
#: cluster may run the second step on the same worker process once the first is done,
#: rather than wait for a new worker process (a few seconds for a new runtime_env).
_RAY_PLACES = (
    "Ray may run two gathered steps one after the other on one worker process while it "
    "would otherwise start a second (its choice, seen under load); that gathered steps run at "
    "once on two Ray worker processes is shown by "
    "test_gathered_steps_run_in_two_ray_worker_processes_at_once, whose steps wait for each other"
)
#: Activations run in Ray worker processes, which import their own copy of the workflows.
_CODE_SWAPPED = (
    "it replaces the workflow's code in this process between two activations (versioning, "
    "non-determinism); on Ray the activations run in Ray worker processes, which import the "
    "workflow modules themselves, so the new code never reaches them (versioning on Ray is "
    "checked by test_ray_versioning: new code deployed while a run sleeps)"
)
_LOGS_ELSEWHERE = (
    "it captures the workflow logger's lines in this process; on Ray the workflow runs in a "
    "Ray worker process, whose logs go to that process's stderr (Ray's log files)"
)
#: The first activation of each case waits for a new Ray worker process.
_COLD_START = (
    "its 0.3 s workflow timeout is shorter than a first activation takes on Ray here: each "
    "case has its own storage URL, so its own runtime_env, for which Ray starts a new worker "
    "process (seconds); the run times out before it starts. Workflow timeouts on Ray are "
    "checked by test_ray_timeouts"
)
#: Cases that cannot apply on Ray, each with its reason (they are not collected).
EXCLUDED: dict[str, str] = {
    "test_timeout_ends_a_long_sleep": _COLD_START,
    "test_start_time_timeout_ends_a_run_waiting_on_a_hook": _COLD_START,
    "test_patched_records_a_marker_and_old_runs_keep_the_old_branch": _CODE_SWAPPED,
    "test_deprecate_patch_replays_runs_with_and_without_the_marker": _CODE_SWAPPED,
    "test_a_run_that_had_not_reached_the_patch_takes_the_new_branch": _CODE_SWAPPED,
    "test_removing_a_patch_whose_marker_is_recorded_is_non_determinism": _CODE_SWAPPED,
    "test_newest_first_patches_replay_each_generation": _CODE_SWAPPED,
    "test_changed_code_raises_non_determinism": _CODE_SWAPPED,
    "test_workflow_logger_prints_each_line_once_across_activations": _LOGS_ELSEWHERE,
    "test_gather_runs_steps_concurrently_with_stable_ids": _RAY_PLACES,
    "test_anyio_task_group_runs_steps_concurrently": _RAY_PLACES,
    "test_retryable_twice_then_success": _IN_PROCESS_CALLS,
    "test_fatal_error_fails_at_once": _IN_PROCESS_CALLS,
    "test_retry_after_is_honoured": _IN_PROCESS_CALLS,
    "test_workflow_catches_final_failure_and_compensates": _IN_PROCESS_CALLS,
    "test_cancel_delivers_cancellation_and_ends_cancelled": _IN_PROCESS_CALLS,
    "test_oversize_step_result_fails_fatally_naming_size_and_limit": _IN_PROCESS_CALLS,
}


@pytest.fixture(autouse=True, scope="module")
def _disconnect_after() -> Iterator[None]:
    """This process connected to Ray as a driver; it leaves once the module is done."""
    yield
    disconnect_from_ray()


class TestEngineOnRay(EngineConformance):
    """Every applicable engine case with step bodies on Ray."""

    extra_settings: ClassVar[dict[str, Any]] = {}

    @pytest.fixture(autouse=True)
    def _on_the_cluster(self, ray_cluster: RayCluster, monkeypatch: pytest.MonkeyPatch) -> None:
        for key, value in RAY_ENV.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(
            self,
            "extra_settings",
            {
                "executor": "ray",
                "modules": SUITE_MODULES,
                "ray": {"address": ray_cluster.address, "dispatch_timeout": 10},
            },
        )

    def make_storage_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'engine.db'}"


for _name in EXCLUDED:
    assert callable(getattr(EngineConformance, _name)), _name  # a renamed case fails here
    setattr(TestEngineOnRay, _name, None)

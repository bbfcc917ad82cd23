"""The storage kernel (storage/rules.py) and the row codec (storage/rows.py)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import attrs
import pytest

from pyworkflow.errors import HookTokenConflictError
from pyworkflow.models import EventType, NewEvent, Run, RunPatch, RunStatus, StepLease
from pyworkflow.storage import rows, rules, schema

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _run(**changes: object) -> Run:
    run = Run("r1", "wf", RunStatus.RUNNING, "[]", "json", T0, T0)
    return attrs.evolve(run, **changes)


def test_row_columns_are_the_sql_tables_columns() -> None:
    assert rows.RUN_COLUMNS == tuple(schema.RunRow.model_fields)
    assert rows.EVENT_COLUMNS == tuple(schema.EventRow.model_fields)
    assert rows.HOOK_COLUMNS == tuple(schema.HookRow.model_fields)
    assert rows.STEP_LEASE_COLUMNS == tuple(schema.StepLeaseRow.model_fields)


def test_row_codec_does_not_import_sqlmodel() -> None:
    code = (
        "import sys, pyworkflow.storage.rows, pyworkflow.storage.rules, pyworkflow.storage.file;"
        "print('sqlmodel' in sys.modules, 'sqlalchemy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_run_row_round_trip() -> None:
    run = _run(wake_at=T0, lease_owner="w", lease_expires_at=T0 + timedelta(seconds=5))
    assert rows.run_from_row(rows.run_to_values(run)) == run


@pytest.mark.parametrize(
    "patch",
    [
        RunPatch(status=RunStatus.COMPLETED, result="1", completed_at=T0, set_wake=True),
        RunPatch(clear_outcome=True, status=RunStatus.PENDING, set_wake=True, wake_at=T0),
        RunPatch(clear_outcome=True, error="boom"),
        RunPatch(),
    ],
)
def test_patch_values_store_what_apply_patch_applies(patch: RunPatch) -> None:
    run = _run(result="0", error="e", error_message="m", completed_at=T0, wake_at=T0)
    patched = rules.apply_patch(run, patch, None, T0, 3)
    stored = dict(zip(rows.RUN_COLUMNS, rows.run_to_values(patched), strict=True))
    values = rows.patch_values(patch)
    assert values == {name: stored[name] for name in values}
    changed = {n for n in rows.RUN_COLUMNS if getattr(run, n) != getattr(patched, n)}
    assert changed - {"updated_at", "last_seq"} <= set(values)


def test_clear_outcome_then_patch_values_win() -> None:
    changes = rules.patch_changes(RunPatch(clear_outcome=True, result="r", set_wake=True))
    assert changes == {
        "result": "r",
        "error": None,
        "error_message": None,
        "completed_at": None,
        "wake_at": None,
    }


def test_apply_patch_releases_only_the_owners_lease() -> None:
    run = _run(lease_owner="a", lease_expires_at=T0)
    release = RunPatch(release_lease=True)
    assert rules.apply_patch(run, release, "b", T0, 1).lease_owner == "a"
    assert rules.apply_patch(run, release, "a", T0, 1).lease_owner is None


def test_paging_cursor_continues_after_the_last_run() -> None:
    runs = [_run(run_id=f"r{i}", created_at=T0 + timedelta(seconds=i)) for i in range(5)]
    first = rules.page_of(runs, None, None, 2, None)
    assert [r.run_id for r in first.runs] == ["r4", "r3"]
    assert first.next_cursor is not None
    second = rules.page_of(runs, None, None, 2, first.next_cursor)
    assert [r.run_id for r in second.runs] == ["r2", "r1"]
    with pytest.raises(ValueError, match="invalid cursor"):
        rules.decode_cursor("not a cursor")


def test_claim_rule() -> None:
    due = _run(wake_at=T0)
    assert rules.can_claim(due, T0)
    assert not rules.can_claim(_run(wake_at=T0 + timedelta(seconds=1)), T0)
    leased = attrs.evolve(due, lease_owner="dispatch:x", lease_expires_at=T0 + timedelta(1))
    assert not rules.can_claim(leased, T0)
    assert rules.can_claim(leased, T0, take_over_prefix="dispatch:")
    expired = attrs.evolve(leased, lease_expires_at=T0 - timedelta(seconds=1))
    assert [r.run_id for r in rules.claimable([leased, expired], T0, 10)] == ["r1"]


def test_step_lease_compare_and_set() -> None:
    held = StepLease("r1", "s1", "a", T0)
    assert rules.swap_step_lease(held, "r1", "s1", "b", T0, "c") == (False, held)
    assert rules.swap_step_lease(held, "r1", "s1", None, None, "a") == (True, None)
    assert rules.swap_step_lease(None, "r1", "s1", None, None, "a") == (False, None)
    assert rules.swap_step_lease(None, "r1", "s1", "b", T0, None) == (
        True,
        StepLease("r1", "s1", "b", T0),
    )
    with pytest.raises(ValueError, match="expiry"):
        rules.swap_step_lease(None, "r1", "s1", "b", None, None)


def _hook(kind: EventType, token: str) -> NewEvent:
    return NewEvent(kind, f"c-{token}", {"token": token}, T0)


def test_hook_rule_dispose_then_recreate() -> None:
    events = [_hook(EventType.HOOK_DISPOSED, "t"), _hook(EventType.HOOK_CREATED, "t")]
    created, disposed = rules.hook_changes("r1", events)
    assert [h.token for h in created] == ["t"] and disposed == ["t"]
    rules.check_hook_conflicts("r1", created, disposed, lambda token: "r1")
    with pytest.raises(HookTokenConflictError, match="run r2"):
        rules.check_hook_conflicts("r1", created, disposed, lambda token: "r2")
    with pytest.raises(HookTokenConflictError):
        rules.hook_changes("r1", [_hook(EventType.HOOK_CREATED, "t")] * 2)

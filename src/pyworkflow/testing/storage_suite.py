"""The storage conformance suite: every backend, built in or plugin, must pass it.

Use it from a plugin's tests with one import::

    from pyworkflow.testing import StorageConformance

    class TestRedisStorage(StorageConformance):
        def make_storage(self, tmp_path):
            return RedisStorage(f"redis://127.0.0.1:{port}/0")
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from pyworkflow.errors import (
    ConcurrencyError,
    HookNotFoundError,
    HookTokenConflictError,
    RunNotFoundError,
)
from pyworkflow.models import EventType, NewEvent, Run, RunPatch, RunStatus, utcnow
from pyworkflow.storage.base import Storage

__all__ = ["StorageConformance", "make_run"]


def make_run(run_id: str, **changes: object) -> Run:
    """A run row for tests, created now."""
    now = utcnow()
    fields: dict[str, object] = {
        "run_id": run_id,
        "workflow_name": "wf",
        "status": RunStatus.PENDING,
        "input": "{}",
        "serializer": "json",
        "created_at": now,
        "updated_at": now,
    }
    fields.update(changes)
    return Run(**fields)  # type: ignore[arg-type]  # test rows built from keywords


def ev(kind: EventType = EventType.STEP_COMPLETED, cid: str = "1", **payload: object) -> NewEvent:
    return NewEvent(kind, cid, payload)


@pytest.mark.anyio
class StorageConformance:
    """Subclass it and implement :meth:`make_storage`; pytest collects every check."""

    def make_storage(self, tmp_path: Path) -> Storage:
        """Return an unopened storage, fresh and empty for each test."""
        raise NotImplementedError

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[Storage]:
        storage = self.make_storage(tmp_path)
        await storage.open()
        try:
            yield storage
        finally:
            await storage.close()

    # ----- runs and the log -----

    async def test_create_and_get(self, storage: Storage) -> None:
        run, created = await storage.create_run(make_run("r1"), [ev(EventType.WORKFLOW_STARTED)])
        assert created and run.last_seq == 1
        got = await storage.get_run("r1")
        assert got.run_id == "r1" and got.status == RunStatus.PENDING and got.last_seq == 1
        assert [e.seq for e in await storage.get_events("r1")] == [1]
        with pytest.raises(RunNotFoundError):
            await storage.get_run("missing")
        with pytest.raises(RunNotFoundError):
            await storage.get_events("missing")

    async def test_idempotency_key_returns_the_existing_run(self, storage: Storage) -> None:
        _, created = await storage.create_run(make_run("a", idempotency_key="k"), [])
        again, created_again = await storage.create_run(make_run("b", idempotency_key="k"), [])
        assert created and not created_again and again.run_id == "a"
        with pytest.raises(RunNotFoundError):
            await storage.get_run("b")

    async def test_append_with_optimistic_concurrency(self, storage: Storage) -> None:
        await storage.create_run(make_run("r"), [ev(EventType.WORKFLOW_STARTED)])
        assert await storage.append_events("r", 1, [ev(cid="1"), ev(cid="2")]) == 3
        stale_patch = RunPatch(status=RunStatus.COMPLETED, result="r")
        with pytest.raises(ConcurrencyError) as info:
            await storage.append_events("r", 1, [ev(cid="x")], stale_patch)
        assert (info.value.run_id, info.value.expected_seq, info.value.actual_seq) == ("r", 1, 3)
        with pytest.raises(ConcurrencyError):
            await storage.append_events("r", 4, [ev(cid="y")])  # ahead of the log: refused too
        run = await storage.get_run("r")
        assert run.status == RunStatus.PENDING and run.result is None  # patch not applied
        events = await storage.get_events("r")
        assert [e.seq for e in events] == [1, 2, 3]
        assert [e.correlation_id for e in events[1:]] == ["1", "2"]
        assert [e.seq for e in await storage.get_events("r", after_seq=2)] == [3]
        assert (await storage.get_run("r")).last_seq == 3
        with pytest.raises(RunNotFoundError):
            await storage.append_events("missing", 0, [ev()])

    async def test_payload_round_trips(self, storage: Storage) -> None:
        payload = {"name": "s", "attempt": 2, "nested": {"a": [1, 2.5, None, True]}, "t": "é"}
        await storage.create_run(make_run("r"), [NewEvent(EventType.STEP_COMPLETED, "1", payload)])
        (event,) = await storage.get_events("r")
        assert dict(event.payload) == payload and event.type == EventType.STEP_COMPLETED

    async def test_patch_updates_the_row_in_the_same_append(self, storage: Storage) -> None:
        now = utcnow()
        await storage.create_run(make_run("r", wake_at=now), [])
        await storage.claim_runs("w1", now, 10, timedelta(seconds=30))
        later = now + timedelta(hours=1)
        patch = RunPatch(status=RunStatus.SUSPENDED, set_wake=True, wake_at=later)
        await storage.append_events("r", 0, [ev()], patch, owner="w1")
        run = await storage.get_run("r")
        assert run.status == RunStatus.SUSPENDED and run.wake_at == later
        assert run.lease_owner == "w1"  # not released: the patch did not ask
        await storage.append_events("r", 1, [], RunPatch(release_lease=True), owner="other")
        assert (await storage.get_run("r")).lease_owner == "w1"  # only the owner releases
        done = RunPatch(
            status=RunStatus.FAILED,
            error="e",
            error_message="boom",
            completed_at=later,
            set_wake=True,
            wake_at=None,
            release_lease=True,
        )
        await storage.append_events("r", 1, [ev(cid="2")], done, owner="w1")
        run = await storage.get_run("r")
        assert run.status == RunStatus.FAILED and run.error_message == "boom"
        assert run.wake_at is None and run.lease_owner is None and run.completed_at == later
        await storage.append_events("r", 2, [], RunPatch(clear_outcome=True))
        run = await storage.get_run("r")
        assert run.error is None and run.error_message is None and run.completed_at is None

    async def test_eight_concurrent_writers(self, storage: Storage) -> None:
        await storage.create_run(make_run("r"), [])
        conflicts = 0

        async def writer(n: int) -> None:
            nonlocal conflicts
            for i in range(10):
                while True:
                    seq = (await storage.get_run("r")).last_seq
                    try:
                        await storage.append_events("r", seq, [ev(cid=f"{n}-{i}")])
                        break
                    except ConcurrencyError:
                        conflicts += 1

        async with anyio.create_task_group() as tg:
            for n in range(8):
                tg.start_soon(writer, n)
        events = await storage.get_events("r")
        assert [e.seq for e in events] == list(range(1, 81))
        assert sorted(e.correlation_id or "" for e in events) == sorted(
            f"{n}-{i}" for n in range(8) for i in range(10)
        )

    # ----- due runs and leases -----

    async def test_claim_only_due_and_unleased_runs(self, storage: Storage) -> None:
        now = utcnow()
        await storage.create_run(make_run("due", wake_at=now - timedelta(seconds=1)), [])
        await storage.create_run(make_run("later", wake_at=now + timedelta(hours=1)), [])
        await storage.create_run(make_run("never"), [])
        claimed = await storage.claim_runs("w1", now, 10, timedelta(seconds=30))
        assert [r.run_id for r in claimed] == ["due"]
        assert claimed[0].lease_owner == "w1"
        assert await storage.claim_runs("w2", now, 10, timedelta(seconds=30)) == []

    async def test_lease_expiry_renew_steal_release(self, storage: Storage) -> None:
        now = utcnow()
        await storage.create_run(make_run("r", wake_at=now), [])
        await storage.claim_runs("w1", now, 1, timedelta(seconds=5))
        assert await storage.renew_lease("r", "w1", now + timedelta(seconds=10))
        assert not await storage.renew_lease("r", "w2", now + timedelta(seconds=10))
        assert await storage.claim_runs("w2", now + timedelta(seconds=9), 1, timedelta(5)) == []
        stolen = await storage.claim_runs("w2", now + timedelta(seconds=11), 1, timedelta(5))
        assert [r.lease_owner for r in stolen] == ["w2"]
        assert not await storage.renew_lease("r", "w1", now + timedelta(seconds=20))
        await storage.release_lease("r", "w1")  # not the owner: no effect
        assert (await storage.get_run("r")).lease_owner == "w2"
        await storage.release_lease("r", "w2")
        assert (await storage.get_run("r")).lease_owner is None

    async def test_claim_limit_and_order(self, storage: Storage) -> None:
        now = utcnow()
        for i in range(5):
            await storage.create_run(make_run(f"r{i}", wake_at=now - timedelta(seconds=i)), [])
        claimed = await storage.claim_runs("w", now, 3, timedelta(seconds=30))
        assert [r.run_id for r in claimed] == ["r4", "r3", "r2"]

    async def test_next_wake_and_due_timers(self, storage: Storage) -> None:
        now = utcnow()
        assert await storage.next_wake_at() is None
        for i, offset in enumerate([30, -20, -10, 60]):
            await storage.create_run(make_run(f"r{i}", wake_at=now + timedelta(seconds=offset)), [])
        assert await storage.next_wake_at() == now - timedelta(seconds=20)
        assert await storage.due_timers(now, 10) == [
            ("r1", now - timedelta(seconds=20)),
            ("r2", now - timedelta(seconds=10)),
        ]
        assert [r for r, _ in await storage.due_timers(now, 1)] == ["r1"]
        assert await storage.due_timers(now - timedelta(seconds=21), 10) == []
        exactly = await storage.due_timers(now - timedelta(seconds=10), 10)  # wake_at <= now
        assert [r for r, _ in exactly] == ["r1", "r2"]

    # ----- listing -----

    async def test_list_filters_and_pagination(self, storage: Storage) -> None:
        base = utcnow()
        for i in range(7):
            status = RunStatus.COMPLETED if i % 2 else RunStatus.FAILED
            run = make_run(
                f"r{i}",
                workflow_name="a" if i < 4 else "b",
                status=status,
                created_at=base + timedelta(seconds=i),
            )
            await storage.create_run(run, [])
        seen: list[str] = []
        cursor = None
        while True:
            page = await storage.list_runs(limit=3, cursor=cursor)
            seen += [r.run_id for r in page.runs]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == [f"r{i}" for i in reversed(range(7))]
        failed = await storage.list_runs(status=RunStatus.FAILED)
        assert [r.run_id for r in failed.runs] == ["r6", "r4", "r2", "r0"]
        only_b = await storage.list_runs(workflow="b", status=RunStatus.COMPLETED)
        assert [r.run_id for r in only_b.runs] == ["r5"]

    # ----- hooks -----

    async def test_hooks_by_token(self, storage: Storage) -> None:
        created = ev(EventType.HOOK_CREATED, "3", token="tok", schema=None, secret="s")
        await storage.create_run(make_run("r"), [])
        await storage.append_events("r", 0, [created])
        hook = await storage.get_hook("tok")
        assert (hook.run_id, hook.correlation_id, hook.secret) == ("r", "3", "s")
        now = utcnow()
        run_id, seq = await storage.append_hook_payload("tok", {"token": "tok", "data": "1"}, now)
        assert (run_id, seq) == ("r", 2)
        events = await storage.get_events("r")
        assert events[-1].type == EventType.HOOK_RECEIVED and events[-1].correlation_id == "3"
        assert (await storage.get_run("r")).wake_at == now
        await storage.create_run(make_run("other"), [])
        dup = ev(EventType.HOOK_CREATED, "1", token="tok")
        with pytest.raises(HookTokenConflictError, match="tok"):
            await storage.append_events("other", 0, [ev(cid="x"), dup])
        assert await storage.get_events("other") == []  # the whole append was refused
        await storage.append_events("other", 0, [ev(EventType.HOOK_DISPOSED, "1", token="tok")])
        assert (await storage.get_hook("tok")).run_id == "r"  # not its hook to dispose
        await storage.append_events("r", 2, [ev(EventType.HOOK_DISPOSED, "3", token="tok")])
        with pytest.raises(HookNotFoundError):
            await storage.get_hook("tok")
        with pytest.raises(HookNotFoundError):
            await storage.append_hook_payload("tok", {"data": "2"}, now)
        assert len(await storage.get_events("r")) == 3

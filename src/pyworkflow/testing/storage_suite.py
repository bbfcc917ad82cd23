"""The storage conformance suite: every backend, built in or plugin, must pass it.

Use it from a plugin's tests with one import::

    from pyworkflow.testing import StorageConformance

    class TestRedisStorage(StorageConformance):
        def make_storage(self, tmp_path):
            return RedisStorage(f"redis://127.0.0.1:{port}/0")
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from pyworkflow.config import load_settings
from pyworkflow.errors import (
    ConcurrencyError,
    HookNotFoundError,
    HookTokenConflictError,
    RunNotFoundError,
)
from pyworkflow.models import (
    EventType,
    NewEvent,
    Run,
    RunPatch,
    RunStatus,
    StepLease,
    utcnow,
)
from pyworkflow.runtime import Runtime
from pyworkflow.storage.base import Storage, open_storage
from pyworkflow.testing.suite_checkpoints import CheckpointStorageCases
from pyworkflow.testing.suite_flow_storage import (
    QueueStorageCases,
    ScheduleStorageCases,
    StepSlotStorageCases,
)
from pyworkflow.testing.suite_streams import StreamStorageCases

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
class StorageConformance(
    QueueStorageCases,
    ScheduleStorageCases,
    StepSlotStorageCases,
    StreamStorageCases,
    CheckpointStorageCases,
):
    """Subclass it and implement :meth:`make_storage`; pytest collects every check.

    Every ``test_*`` method is one rule of the :class:`~pyworkflow.storage.base.Storage`
    contract (appends and optimistic concurrency, claiming and leases, timers,
    hooks, listing, queues, schedules, streams, checkpoints). A backend is
    correct when the whole suite passes against it.

    ```python
    from pyworkflow.storage.memory import MemoryStorage
    from pyworkflow.testing import StorageConformance

    class TestMyStorage(StorageConformance):
        def make_storage(self, tmp_path):
            return MemoryStorage()  # your backend, fresh and empty
    ```
    """

    def make_storage(self, tmp_path: Path) -> Storage:
        """Return an unopened storage, fresh and empty for each test."""
        raise NotImplementedError

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[Storage]:
        # opened as the runtime opens it: with a task group for its background tasks
        async with self.make_storage(tmp_path) as storage:
            yield storage

    # ----- lifecycle: background tasks live in the owner's task group -----

    async def test_close_ends_every_task_the_storage_started(self, tmp_path: Path) -> None:
        storage = self.make_storage(tmp_path)
        before = asyncio.all_tasks()
        async with anyio.create_task_group() as tg:
            await open_storage(storage, tg)
            started = asyncio.all_tasks() - before
            await storage.create_run(make_run("r"), [ev(EventType.WORKFLOW_STARTED)])
            await storage.close()
            assert [t.get_name() for t in started if not t.done()] == []
        # its tasks are the task group's own: they end when the task group is cancelled
        owned = self.make_storage(tmp_path)
        before = asyncio.all_tasks()
        async with anyio.create_task_group() as tg:
            await open_storage(owned, tg)
            started = asyncio.all_tasks() - before
            tg.cancel_scope.cancel()
        assert [t.get_name() for t in started if not t.done()] == []
        await owned.close()
        # and without a task group it starts none at all (a fresh storage: the suite's
        # make_storage may hand out an empty one per call)
        plain = self.make_storage(tmp_path)
        before = asyncio.all_tasks()
        await plain.open()
        try:
            await plain.create_run(make_run("p"), [ev(EventType.WORKFLOW_STARTED)])
            assert (await plain.get_run("p")).last_seq == 1
            assert asyncio.all_tasks() - before == set()
        finally:
            await plain.close()

    def test_runtime_shutdown_leaves_no_storage_task(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        storage = self.make_storage(tmp_path)
        started: set[asyncio.Task[Any]] = set()
        left: list[str] = []
        closed: list[bool] = []
        open_, close_ = storage.open, storage.close

        @functools.wraps(open_)  # the same signature: a storage without the task group too
        async def open_watched(*task_group: anyio.abc.TaskGroup | None) -> None:
            before = asyncio.all_tasks()
            await open_(*task_group)
            started.update(asyncio.all_tasks() - before)

        async def close_watched() -> None:
            await close_()
            left.extend(t.get_name() for t in started if not t.done())
            closed.append(True)

        monkeypatch.setattr(storage, "open", open_watched)
        monkeypatch.setattr(storage, "close", close_watched)
        runtime = Runtime(load_settings({"storage": "memory://"}))
        runtime.storage = storage
        runtime.start()
        try:
            if storage.pushes_wakeups:  # its wake-up loop runs in the runtime's task group
                assert started
            runtime.call(storage.create_run, make_run("r"), [ev(EventType.WORKFLOW_STARTED)])
        finally:
            runtime.shutdown()
        assert closed == [True]
        assert left == []

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

    async def test_claim_run_leases_one_due_run(self, storage: Storage) -> None:
        now = utcnow()
        await storage.create_run(make_run("due", wake_at=now - timedelta(seconds=1)), [])
        await storage.create_run(make_run("exactly", wake_at=now), [])  # wake_at <= now
        await storage.create_run(make_run("later", wake_at=now + timedelta(hours=1)), [])
        await storage.create_run(make_run("never"), [])
        claimed = await storage.claim_run("due", "w1", now, timedelta(seconds=30))
        assert claimed is not None and claimed.run_id == "due"
        assert claimed.lease_owner == "w1"
        assert claimed.lease_expires_at == now + timedelta(seconds=30)
        stored = await storage.get_run("due")
        assert (stored.lease_owner, stored.lease_expires_at) == ("w1", now + timedelta(seconds=30))
        assert (await storage.get_run("exactly")).lease_owner is None  # only the one asked for
        exactly = await storage.claim_run("exactly", "w1", now, timedelta(seconds=30))
        assert exactly is not None and exactly.lease_owner == "w1"
        for run_id in ("later", "never"):
            assert await storage.claim_run(run_id, "w1", now, timedelta(seconds=30)) is None
            assert (await storage.get_run(run_id)).lease_owner is None
        assert await storage.claim_run("missing", "w1", now, timedelta(seconds=30)) is None

    async def test_claim_run_respects_and_expires_leases(self, storage: Storage) -> None:
        now = utcnow()
        await storage.create_run(make_run("r", wake_at=now), [])
        assert await storage.claim_run("r", "w1", now, timedelta(seconds=10)) is not None
        later = now + timedelta(seconds=9)
        assert await storage.claim_run("r", "w2", later, timedelta(seconds=10)) is None
        run = await storage.get_run("r")
        assert (run.lease_owner, run.lease_expires_at) == ("w1", now + timedelta(seconds=10))
        expired = now + timedelta(seconds=11)
        stolen = await storage.claim_run("r", "w2", expired, timedelta(seconds=10))
        assert stolen is not None and stolen.lease_owner == "w2"
        assert stolen.lease_expires_at == expired + timedelta(seconds=10)
        assert (await storage.get_run("r")).lease_owner == "w2"
        assert not await storage.renew_lease("r", "w1", expired + timedelta(seconds=30))

    async def test_claim_run_takes_over_placeholder_leases(self, storage: Storage) -> None:
        now = utcnow()
        lease = timedelta(minutes=5)
        holders = {"placeholder": "dispatch:abc", "worker": "worker-1", "lookalike": "x-dispatch:a"}
        for run_id, holder in holders.items():
            await storage.create_run(make_run(run_id, wake_at=now), [])
            assert await storage.claim_run(run_id, holder, now, lease) is not None
        await storage.create_run(make_run("not-due", wake_at=now + timedelta(hours=1)), [])
        assert await storage.claim_run("placeholder", "worker-2", now, lease) is None  # no prefix
        for run_id in ("worker", "lookalike", "not-due", "missing"):
            taken = await storage.claim_run(
                run_id, "worker-2", now, lease, take_over_prefix="dispatch:"
            )
            assert taken is None, run_id
        for run_id, holder in holders.items():
            assert (await storage.get_run(run_id)).lease_owner == holder
        taken = await storage.claim_run(
            "placeholder", "worker-2", now, timedelta(seconds=30), take_over_prefix="dispatch:"
        )
        assert taken is not None and taken.lease_owner == "worker-2"
        assert taken.lease_expires_at == now + timedelta(seconds=30)
        assert (await storage.get_run("placeholder")).lease_owner == "worker-2"

    # ----- runs created already leased (a start handed straight to its process's worker) -----

    async def test_a_run_created_leased_is_its_owners_until_the_lease_ends(
        self, storage: Storage
    ) -> None:
        now = utcnow()
        until = now + timedelta(seconds=10)
        leased = make_run("r", wake_at=now, lease_owner="w1", lease_expires_at=until)
        run, created = await storage.create_run(leased, [ev(EventType.WORKFLOW_STARTED)])
        assert created and (run.lease_owner, run.lease_expires_at) == ("w1", until)
        stored = await storage.get_run("r")
        assert (stored.lease_owner, stored.lease_expires_at, stored.wake_at) == ("w1", until, now)
        assert stored.last_seq == 1
        # due, but leased: no other worker claims it, by a pass or by its id
        assert await storage.claim_runs("w2", now, 10, timedelta(seconds=30)) == []
        assert await storage.claim_run("r", "w2", now, timedelta(seconds=30)) is None
        assert await storage.due_timers(now, 10) == [("r", now)]  # still indexed by wake_at
        # the owner renews it like a claimed lease; another worker cannot
        renewed = now + timedelta(seconds=20)
        assert await storage.renew_lease("r", "w1", renewed)
        assert not await storage.renew_lease("r", "w2", renewed)
        assert await storage.claim_runs("w2", now + timedelta(seconds=15), 10, timedelta(5)) == []
        # ending the run releases the lease in the same append
        done = RunPatch(
            status=RunStatus.COMPLETED,
            result="1",
            completed_at=now,
            set_wake=True,
            wake_at=None,
            release_lease=True,
        )
        end = [ev(EventType.WORKFLOW_COMPLETED)]
        assert await storage.append_events("r", 1, end, done, owner="w1") == 2
        run = await storage.get_run("r")
        assert run.status == RunStatus.COMPLETED and run.lease_owner is None
        assert run.lease_expires_at is None and run.wake_at is None

    async def test_a_run_created_leased_is_recovered_when_its_owner_dies(
        self, storage: Storage
    ) -> None:
        now = utcnow()
        until = now + timedelta(seconds=5)
        leased = make_run("r", wake_at=now, lease_owner="dead", lease_expires_at=until)
        await storage.create_run(leased, [ev(EventType.WORKFLOW_STARTED)])
        # never renewed: once the lease has expired the run is due to anyone
        assert await storage.claim_runs("w2", now + timedelta(seconds=4), 10, timedelta(5)) == []
        later = now + timedelta(seconds=6)
        (recovered,) = await storage.claim_runs("w2", later, 10, timedelta(seconds=30))
        assert (recovered.run_id, recovered.lease_owner) == ("r", "w2")
        assert recovered.lease_expires_at == later + timedelta(seconds=30)
        assert not await storage.renew_lease("r", "dead", later + timedelta(seconds=60))
        # and by its id too (a fresh run, leased the same way)
        await storage.create_run(
            make_run("s", wake_at=now, lease_owner="dead", lease_expires_at=until), []
        )
        assert await storage.claim_run("s", "w3", now + timedelta(seconds=4), timedelta(5)) is None
        taken = await storage.claim_run("s", "w3", later, timedelta(seconds=30))
        assert taken is not None and taken.lease_owner == "w3"

    async def test_an_idempotent_start_leaves_the_existing_run_unleased(
        self, storage: Storage
    ) -> None:
        now = utcnow()
        await storage.create_run(make_run("a", wake_at=now, idempotency_key="k"), [])
        again = make_run(
            "b",
            wake_at=now,
            idempotency_key="k",
            lease_owner="w1",
            lease_expires_at=now + timedelta(seconds=30),
        )
        existing, created = await storage.create_run(again, [ev(EventType.WORKFLOW_STARTED)])
        assert not created and existing.run_id == "a" and existing.lease_owner is None
        assert (await storage.get_run("a")).lease_owner is None
        with pytest.raises(RunNotFoundError):
            await storage.get_run("b")
        (claimed,) = await storage.claim_runs("w2", now, 10, timedelta(seconds=30))
        assert claimed.run_id == "a"

    # ----- step leases -----

    async def test_set_step_lease_writes_and_reads_back(self, storage: Storage) -> None:
        now = utcnow()
        first, second = now + timedelta(seconds=30), now + timedelta(seconds=60)
        await storage.create_run(make_run("r"), [])
        assert await storage.get_step_leases("r") == {}
        assert await storage.set_step_lease("r", "s1", "queued:1", first)
        assert await storage.get_step_leases("r") == {"s1": StepLease("r", "s1", "queued:1", first)}
        assert await storage.set_step_lease("r", "s1", "w1", second)  # unconditional overwrite
        assert await storage.set_step_lease("r", "s2", "queued:1", first)
        assert await storage.get_step_leases("r") == {
            "s1": StepLease("r", "s1", "w1", second),
            "s2": StepLease("r", "s2", "queued:1", first),
        }

    async def test_set_step_lease_compare_and_set(self, storage: Storage) -> None:
        now = utcnow()
        until = now + timedelta(seconds=30)
        past = now - timedelta(seconds=30)
        await storage.create_run(make_run("r"), [])
        assert await storage.set_step_lease("r", "s", "queued:1", past)
        assert not await storage.set_step_lease("r", "s", "w2", until, if_owner="queued:2")
        assert await storage.get_step_leases("r") == {"s": StepLease("r", "s", "queued:1", past)}
        # the current owner matches: written whatever the lease's expiry
        assert await storage.set_step_lease("r", "s", "w1", until, if_owner="queued:1")
        assert await storage.get_step_leases("r") == {"s": StepLease("r", "s", "w1", until)}
        assert not await storage.set_step_lease("r", "s", "w2", until, if_owner="queued:1")
        assert (await storage.get_step_leases("r"))["s"].owner == "w1"
        # no lease at all: a compare-and-set fails and writes nothing
        assert not await storage.set_step_lease("r", "other", "w1", until, if_owner="queued:1")
        assert set(await storage.get_step_leases("r")) == {"s"}

    async def test_set_step_lease_removes(self, storage: Storage) -> None:
        now = utcnow()
        until = now + timedelta(seconds=30)
        await storage.create_run(make_run("r"), [])
        for step in ("a", "b", "c"):
            assert await storage.set_step_lease("r", step, "w1", until)
        assert not await storage.set_step_lease("r", "a", None, None, if_owner="w2")
        assert set(await storage.get_step_leases("r")) == {"a", "b", "c"}
        assert await storage.set_step_lease("r", "a", None, None, if_owner="w1")
        assert set(await storage.get_step_leases("r")) == {"b", "c"}
        assert not await storage.set_step_lease("r", "a", None, None, if_owner="w1")  # gone
        assert await storage.set_step_lease("r", "b", None, None)  # unconditional
        assert await storage.get_step_leases("r") == {"c": StepLease("r", "c", "w1", until)}
        assert await storage.set_step_lease("r", "c", None, None)
        assert await storage.get_step_leases("r") == {}
        assert await storage.expired_step_leases(now + timedelta(hours=1), 10) == []

    async def test_step_leases_are_per_run(self, storage: Storage) -> None:
        now = utcnow()
        until = now + timedelta(seconds=30)
        for run_id in ("r1", "r2", "r3"):
            await storage.create_run(make_run(run_id), [])
        assert await storage.set_step_lease("r1", "s1", "a", until)
        assert await storage.set_step_lease("r1", "s2", "b", until)
        assert await storage.set_step_lease("r2", "s1", "c", until)
        assert await storage.get_step_leases("r1") == {
            "s1": StepLease("r1", "s1", "a", until),
            "s2": StepLease("r1", "s2", "b", until),
        }
        assert await storage.get_step_leases("r2") == {"s1": StepLease("r2", "s1", "c", until)}
        assert await storage.get_step_leases("r3") == {}
        assert not await storage.set_step_lease("r2", "s2", "x", until, if_owner="b")
        assert await storage.set_step_lease("r2", "s1", None, None)  # r1's s1 stays
        assert set(await storage.get_step_leases("r1")) == {"s1", "s2"}
        assert await storage.get_step_leases("r2") == {}

    async def test_expired_step_leases_oldest_first(self, storage: Storage) -> None:
        now = utcnow()

        def at(seconds: int) -> datetime:
            return now + timedelta(seconds=seconds)

        for run_id in ("r1", "r2"):
            await storage.create_run(make_run(run_id), [])
        leases = [
            StepLease("r1", "s2", "w", at(-10)),
            StepLease("r2", "s2", "w", at(30)),
            StepLease("r1", "s1", "w", at(-30)),
            StepLease("r1", "s3", "w", now),  # until == now: not expired yet
            StepLease("r2", "s1", "w", at(-20)),
        ]
        for lease in leases:
            written = await storage.set_step_lease(
                lease.run_id, lease.step_id, lease.owner, lease.until
            )
            assert written
        expired = [leases[2], leases[4], leases[0]]
        assert await storage.expired_step_leases(now, 10) == expired
        assert await storage.expired_step_leases(now, 2) == expired[:2]
        assert await storage.expired_step_leases(at(-25), 10) == expired[:1]
        assert await storage.expired_step_leases(at(-30), 10) == []
        assert await storage.expired_step_leases(at(31), 10) == [*expired, leases[3], leases[1]]
        assert await storage.set_step_lease("r1", "s1", "w", at(60))  # renewed
        assert await storage.set_step_lease("r2", "s1", None, None)  # finished
        assert await storage.expired_step_leases(now, 10) == [leases[0]]

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

    async def test_list_children_of_a_run(self, storage: Storage) -> None:
        base = utcnow()
        await storage.create_run(make_run("parent", created_at=base), [])
        for i in range(5):
            child = make_run(
                f"child{i}",
                parent_run_id="parent" if i != 2 else "someone-else",
                status=RunStatus.COMPLETED if i % 2 else RunStatus.PENDING,
                created_at=base + timedelta(seconds=i + 1),
            )
            await storage.create_run(child, [])
        seen: list[str] = []
        cursor = None
        while True:
            page = await storage.list_runs(parent_run_id="parent", limit=2, cursor=cursor)
            seen += [r.run_id for r in page.runs]
            assert all(r.parent_run_id == "parent" for r in page.runs)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == ["child4", "child3", "child1", "child0"]
        done = await storage.list_runs(parent_run_id="parent", status=RunStatus.COMPLETED)
        assert [r.run_id for r in done.runs] == ["child3", "child1"]
        assert (await storage.list_runs(parent_run_id="child0")).runs == []
        assert (await storage.get_run("child0")).parent_run_id == "parent"

    # ----- hooks -----

    async def test_hooks_by_token(self, storage: Storage) -> None:
        payload = {"token": "tok", "schema": None, "signed": True}
        created = NewEvent(EventType.HOOK_CREATED, "3", payload, hook_secret="s3cr3t-value")
        await storage.create_run(make_run("r"), [])
        await storage.append_events("r", 0, [created])
        hook = await storage.get_hook("tok")
        assert (hook.run_id, hook.correlation_id, hook.secret) == ("r", "3", "s3cr3t-value")
        stored = await storage.get_events("r")
        assert "s3cr3t-value" not in repr(stored) and "s3cr3t-value" not in repr(hook)
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

    async def test_hook_dispose_then_recreate_in_one_append(self, storage: Storage) -> None:
        """One rule on every backend (``hook_changes``): events apply in log order."""

        def created(cid: str, token: str = "tok") -> NewEvent:
            return ev(EventType.HOOK_CREATED, cid, token=token, schema=None)

        def disposed(cid: str, token: str = "tok") -> NewEvent:
            return ev(EventType.HOOK_DISPOSED, cid, token=token)

        await storage.create_run(make_run("holder"), [created("1")])
        # Disposing this run's hook and creating the same token again in one append is allowed.
        await storage.append_events("holder", 1, [disposed("1"), created("2")])
        hook = await storage.get_hook("tok")
        assert (hook.run_id, hook.correlation_id) == ("holder", "2")
        # Another run cannot free a hook it does not hold: the conflict names token and holder.
        await storage.create_run(make_run("other"), [])
        with pytest.raises(HookTokenConflictError, match=r"'tok'.*run holder\b"):
            await storage.append_events("other", 0, [disposed("1"), created("1")])
        assert await storage.get_events("other") == []  # the whole append was refused
        with pytest.raises(HookTokenConflictError, match=r"'tok'.*run holder\b"):
            await storage.create_run(make_run("newcomer"), [disposed("1"), created("1")])
        with pytest.raises(RunNotFoundError):
            await storage.get_run("newcomer")
        # The holder itself must dispose first: creating a token it holds is a conflict.
        with pytest.raises(HookTokenConflictError, match=r"'tok'.*run holder\b"):
            await storage.append_events("holder", 3, [created("3")])
        # Within one append: create, dispose, create again is fine; two creations are not.
        await storage.append_events("holder", 3, [created("4", "t2"), disposed("4", "t2")])
        again = [created("5", "t2"), disposed("5", "t2"), created("6", "t2")]
        await storage.append_events("holder", 5, again)
        assert (await storage.get_hook("t2")).correlation_id == "6"
        await storage.append_events("holder", 8, [disposed("6", "t2")])
        with pytest.raises(HookTokenConflictError, match=r"'t3'.*run holder\b"):
            await storage.append_events("holder", 9, [created("7", "t3"), created("8", "t3")])
        with pytest.raises(HookNotFoundError):
            await storage.get_hook("t3")
        assert len(await storage.get_events("holder")) == 9
        assert (await storage.get_hook("tok")).correlation_id == "2"

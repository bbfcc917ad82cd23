"""Storage conformance cases for queues and schedules (mixed into ``StorageConformance``).

Each case names the rule of :class:`~pyworkflow.storage.base.Storage` it checks;
every backend, built in or plugin, must pass them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest

from pyworkflow.errors import ScheduleNotFoundError
from pyworkflow.models import (
    CatchupPolicy,
    EventType,
    NewEvent,
    OverlapPolicy,
    QueueLimits,
    QueueStats,
    Run,
    RunPatch,
    RunStatus,
    Schedule,
    utcnow,
)
from pyworkflow.storage.base import Storage

__all__ = ["QueueStorageCases", "ScheduleStorageCases", "StepSlotStorageCases"]

_LEASE = timedelta(seconds=30)
_START = [NewEvent(EventType.WORKFLOW_STARTED, None, {})]


def queued(run_id: str, queue: str | None = "q", rank: float = 0.0, **changes: object) -> Run:
    """A run waiting in ``queue`` with ``queue_rank = rank``."""
    now = utcnow()
    fields: dict[str, object] = {
        "run_id": run_id,
        "workflow_name": "wf",
        "status": RunStatus.QUEUED,
        "input": "{}",
        "serializer": "json",
        "created_at": now,
        "updated_at": now,
        "queue": queue,
        "queue_rank": rank,
    }
    fields.update(changes)
    return Run(**fields)  # type: ignore[arg-type]  # test rows built from keywords


async def _end(storage: Storage, run_id: str) -> None:
    run = await storage.get_run(run_id)
    patch = RunPatch(status=RunStatus.COMPLETED, result="null", set_wake=True)
    await storage.append_events(
        run_id, run.last_seq, [NewEvent(EventType.WORKFLOW_COMPLETED)], patch
    )


@pytest.mark.anyio
class QueueStorageCases:
    """``admit_queued_runs``, ``queue_stats`` and ``dedup_key`` in ``create_run``."""

    async def test_queue_fields_round_trip(self, storage: Storage) -> None:
        run = queued("r", priority=5, partition_key="cust-1", dedup_key="d", rank=-3.5)
        _stored, created = await storage.create_run(run, _START)
        assert created
        got = await storage.get_run("r")
        assert got.status == RunStatus.QUEUED and got.wake_at is None
        assert (got.queue, got.priority, got.partition_key, got.dedup_key, got.queue_rank) == (
            "q",
            5,
            "cust-1",
            "d",
            -3.5,
        )
        assert got.admitted_at is None and got.admitted_by is None
        assert (await storage.list_runs(status=RunStatus.QUEUED)).runs[0].run_id == "r"

    async def test_a_queued_run_is_never_claimed_as_due(self, storage: Storage) -> None:
        await storage.create_run(queued("r"), _START)
        now = utcnow() + timedelta(days=1)
        assert await storage.claim_runs("w", now, 10, _LEASE) == []
        assert await storage.claim_run("r", "w", now, _LEASE) is None
        assert await storage.due_timers(now, 10) == []

    async def test_admission_makes_runs_due_and_leased_in_rank_order(
        self, storage: Storage
    ) -> None:
        base = utcnow()
        for i, rank in enumerate([3.0, 1.0, 2.0]):
            await storage.create_run(queued(f"r{i}", rank=rank), _START)
        await storage.create_run(queued("other", queue="other", rank=0.0), _START)
        now = base + timedelta(seconds=1)
        admitted = await storage.admit_queued_runs(
            "q", QueueLimits(), "owner-1", now, 2, _LEASE, worker="w1"
        )
        assert [r.run_id for r in admitted] == ["r1", "r2"]
        for run in admitted:
            got = await storage.get_run(run.run_id)
            assert got.status == RunStatus.PENDING
            assert got.wake_at == now and got.admitted_at == now and got.admitted_by == "w1"
            assert got.lease_owner == "owner-1" and got.lease_expires_at == now + _LEASE
            assert run.status == RunStatus.PENDING and run.lease_owner == "owner-1"
        assert (await storage.get_run("r0")).status == RunStatus.QUEUED
        assert (await storage.get_run("other")).status == RunStatus.QUEUED
        # the admitted runs are leased: another worker's claim does not take them yet
        assert await storage.claim_runs("w2", now, 10, _LEASE) == []

    async def test_equal_ranks_go_by_creation_then_id(self, storage: Storage) -> None:
        t0 = utcnow()
        await storage.create_run(queued("b", created_at=t0, updated_at=t0), _START)
        await storage.create_run(queued("a", created_at=t0, updated_at=t0), _START)
        early = t0 - timedelta(seconds=5)
        await storage.create_run(queued("c", created_at=early, updated_at=early), _START)
        admitted = await storage.admit_queued_runs("q", QueueLimits(), "o", t0, 10, _LEASE)
        assert [r.run_id for r in admitted] == ["c", "a", "b"]

    async def test_concurrency_counts_active_runs_of_the_queue(self, storage: Storage) -> None:
        for i in range(5):
            await storage.create_run(queued(f"r{i}", rank=float(i)), _START)
        # a run of the queue that was never queued (status pending) holds a place too
        now = utcnow()
        direct = queued("direct", status=RunStatus.PENDING, wake_at=now)
        await storage.create_run(direct, _START)
        limits = QueueLimits(concurrency=3)
        first = await storage.admit_queued_runs("q", limits, "o", now, 10, _LEASE)
        assert [r.run_id for r in first] == ["r0", "r1"]
        assert await storage.admit_queued_runs("q", limits, "o", now, 10, _LEASE) == []
        # a suspended run still holds its place; an ended one frees it
        await storage.append_events(
            "r0", 1, [NewEvent(EventType.WORKFLOW_SUSPENDED)], RunPatch(status=RunStatus.SUSPENDED)
        )
        assert await storage.admit_queued_runs("q", limits, "o", now, 10, _LEASE) == []
        await _end(storage, "direct")
        await _end(storage, "r1")
        again = await storage.admit_queued_runs("q", limits, "o", now, 10, _LEASE)
        assert [r.run_id for r in again] == ["r2", "r3"]

    async def test_worker_concurrency_counts_by_the_admitting_worker(
        self, storage: Storage
    ) -> None:
        for i in range(4):
            await storage.create_run(queued(f"r{i}", rank=float(i)), _START)
        now = utcnow()
        limits = QueueLimits(worker_concurrency=1)
        a = await storage.admit_queued_runs("q", limits, "oa", now, 10, _LEASE, worker="A")
        b = await storage.admit_queued_runs("q", limits, "ob", now, 10, _LEASE, worker="B")
        assert [r.run_id for r in a] == ["r0"] and [r.run_id for r in b] == ["r1"]
        assert await storage.admit_queued_runs("q", limits, "oa", now, 10, _LEASE, worker="A") == []
        await _end(storage, "r0")
        a2 = await storage.admit_queued_runs("q", limits, "oa", now, 10, _LEASE, worker="A")
        assert [r.run_id for r in a2] == ["r2"]

    async def test_rate_is_a_sliding_window_over_admissions(self, storage: Storage) -> None:
        for i in range(6):
            await storage.create_run(queued(f"r{i}", rank=float(i)), _START)
        t0 = utcnow()
        limits = QueueLimits(rate=(2, timedelta(seconds=10)))
        first = await storage.admit_queued_runs("q", limits, "o", t0, 10, _LEASE)
        assert [r.run_id for r in first] == ["r0", "r1"]
        # ended runs still count: the rate limits starts, not concurrency
        await _end(storage, "r0")
        await _end(storage, "r1")
        assert (
            await storage.admit_queued_runs("q", limits, "o", t0 + timedelta(seconds=9), 10, _LEASE)
            == []
        )
        later = t0 + timedelta(seconds=10, milliseconds=1)
        second = await storage.admit_queued_runs("q", limits, "o", later, 10, _LEASE)
        assert [r.run_id for r in second] == ["r2", "r3"]

    async def test_a_full_partition_is_passed_over(self, storage: Storage) -> None:
        await storage.create_run(queued("a1", rank=1.0, partition_key="A"), _START)
        await storage.create_run(queued("a2", rank=2.0, partition_key="A"), _START)
        await storage.create_run(queued("a3", rank=3.0, partition_key="A"), _START)
        await storage.create_run(queued("b1", rank=4.0, partition_key="B"), _START)
        await storage.create_run(queued("n1", rank=5.0), _START)
        now = utcnow()
        limits = QueueLimits(partition_concurrency=1)
        admitted = await storage.admit_queued_runs("q", limits, "o", now, 10, _LEASE)
        assert [r.run_id for r in admitted] == ["a1", "b1", "n1"]
        assert await storage.admit_queued_runs("q", limits, "o", now, 10, _LEASE) == []
        await _end(storage, "a1")
        again = await storage.admit_queued_runs("q", limits, "o", now, 10, _LEASE)
        assert [r.run_id for r in again] == ["a2"]

    async def test_concurrent_admissions_never_exceed_the_limit(self, storage: Storage) -> None:
        for i in range(20):
            await storage.create_run(queued(f"r{i:02d}", rank=float(i)), _START)
        now = utcnow()
        limits = QueueLimits(concurrency=5)
        got: list[list[Run]] = []

        async def admit(owner: str) -> None:
            got.append(await storage.admit_queued_runs("q", limits, owner, now, 3, _LEASE))

        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(admit, f"o{i}")
        ids = [r.run_id for batch in got for r in batch]
        assert len(ids) == 5 and len(set(ids)) == 5
        assert sorted(ids) == [f"r{i:02d}" for i in range(5)]

    async def test_dedup_key_returns_the_live_run_of_the_queue(self, storage: Storage) -> None:
        _first, created = await storage.create_run(queued("a", dedup_key="k"), _START)
        assert created
        again, created_again = await storage.create_run(queued("b", dedup_key="k"), _START)
        assert not created_again and again.run_id == "a"
        # another queue, or no queue, is another scope
        _, other = await storage.create_run(queued("c", queue="other", dedup_key="k"), _START)
        assert other
        plain = queued("d", queue=None, status=RunStatus.PENDING, dedup_key="k", queue_rank=None)
        _, plain_created = await storage.create_run(plain, _START)
        assert plain_created
        plain2 = queued("e", queue=None, status=RunStatus.PENDING, dedup_key="k", queue_rank=None)
        back, plain2_created = await storage.create_run(plain2, _START)
        assert not plain2_created and back.run_id == "d"
        # once the run has ended, the key is free again
        await storage.admit_queued_runs("q", QueueLimits(), "o", utcnow(), 10, _LEASE)
        await _end(storage, "a")
        third, created_third = await storage.create_run(queued("f", dedup_key="k"), _START)
        assert created_third and third.run_id == "f"

    async def test_queue_stats(self, storage: Storage) -> None:
        t0 = utcnow()
        for i in range(4):
            await storage.create_run(queued(f"r{i}", rank=float(i)), _START)
        await storage.create_run(queued("x", queue="b"), _START)
        await storage.create_run(queued("plain", queue=None, status=RunStatus.PENDING), _START)
        await storage.admit_queued_runs("q", QueueLimits(), "o", t0, 2, _LEASE)
        await _end(storage, "r0")
        stats = await storage.queue_stats(t0 - timedelta(seconds=1))
        assert stats == [
            QueueStats("b", waiting=1, active=0, admitted=0),
            QueueStats("q", waiting=2, active=1, admitted=2),
        ]
        later = await storage.queue_stats(t0 + timedelta(seconds=1))
        assert QueueStats("q", waiting=2, active=1, admitted=0) in later


def schedule(name: str = "s", **changes: object) -> Schedule:
    """A schedule row for tests, due at ``next_fire_at`` (default: now)."""
    now = utcnow()
    fields: dict[str, object] = {
        "name": name,
        "workflow_name": "wf",
        "cron": "* * * * *",
        "timezone": "Europe/Paris",
        "input": '{"args":[],"kwargs":{}}',
        "serializer": "json",
        "created_at": now,
        "updated_at": now,
        "next_fire_at": now,
    }
    fields.update(changes)
    return Schedule(**fields)  # type: ignore[arg-type]  # test rows built from keywords


@pytest.mark.anyio
class ScheduleStorageCases:
    """The schedule rows: create, put, list, delete, claim under a lease, advance."""

    async def test_schedule_round_trips(self, storage: Storage) -> None:
        when = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
        s = schedule(
            "nightly",
            next_fire_at=when,
            overlap=OverlapPolicy.CANCEL_PREVIOUS,
            catchup=CatchupPolicy.ALL,
            grace=5.5,
            catchup_window=120.0,
            queue="reports",
            origin="code",
            last_fire_at=when - timedelta(days=1),
            last_run_id="run-1",
        )
        stored, created = await storage.create_schedule(s)
        assert created and stored == s
        assert await storage.get_schedule("nightly") == s
        with pytest.raises(ScheduleNotFoundError):
            await storage.get_schedule("missing")

    async def test_interval_schedules_round_trip(self, storage: Storage) -> None:
        """An interval's spec is the text of its ``cron`` field: kept exactly, anchor and all."""
        from pyworkflow.schedules.interval import IntervalSpec

        anchor = datetime(2026, 1, 5, 9, 30, 15, 250000, tzinfo=UTC)
        spec = IntervalSpec.of("1h30m", anchor)
        rows = [
            schedule("aligned", cron="@every 15m", timezone="UTC", next_fire_at=anchor),
            schedule(
                "anchored",
                cron=spec.expression,
                timezone="UTC",
                next_fire_at=spec.next_after(anchor),
            ),
        ]
        for row in rows:
            stored, created = await storage.create_schedule(row)
            assert created and stored == row
        listed = await storage.list_schedules()
        assert listed == rows
        got = await storage.get_schedule("anchored")
        assert got.cron == "@every 1h30m from 2026-01-05T09:30:15.250000+00:00"
        assert IntervalSpec.parse(got.cron) == spec
        assert got.next_fire_at == anchor + timedelta(minutes=90)
        (claimed,) = await storage.claim_schedules("w1", anchor, 10, _LEASE)
        assert claimed == rows[0]
        nxt = IntervalSpec.parse(claimed.cron).next_after(anchor)
        assert await storage.advance_schedule("aligned", "w1", anchor, nxt, anchor, "r1")
        advanced = await storage.get_schedule("aligned")
        assert (advanced.cron, advanced.next_fire_at) == ("@every 15m", nxt)

    async def test_create_keeps_the_existing_schedule(self, storage: Storage) -> None:
        first = schedule("s", cron="0 * * * *")
        await storage.create_schedule(first)
        existing, created = await storage.create_schedule(schedule("s", cron="5 * * * *"))
        assert not created and existing == first
        assert (await storage.get_schedule("s")).cron == "0 * * * *"

    async def test_put_list_delete(self, storage: Storage) -> None:
        await storage.put_schedule(schedule("b"))
        await storage.put_schedule(schedule("a"))
        await storage.put_schedule(schedule("b", cron="*/5 * * * *", paused=True))
        assert [s.name for s in await storage.list_schedules()] == ["a", "b"]
        assert (await storage.get_schedule("b")).paused
        assert await storage.delete_schedule("a") is True
        assert await storage.delete_schedule("a") is False
        assert [s.name for s in await storage.list_schedules()] == ["b"]

    async def test_claim_takes_due_unpaused_unleased_schedules(self, storage: Storage) -> None:
        now = utcnow()
        await storage.put_schedule(schedule("late", next_fire_at=now - timedelta(seconds=5)))
        await storage.put_schedule(schedule("due", next_fire_at=now))
        await storage.put_schedule(schedule("future", next_fire_at=now + timedelta(seconds=1)))
        await storage.put_schedule(schedule("paused", next_fire_at=now, paused=True))
        await storage.put_schedule(schedule("never", next_fire_at=None))
        claimed = await storage.claim_schedules("w1", now, 10, _LEASE)
        assert [s.name for s in claimed] == ["late", "due"]
        assert await storage.claim_schedules("w2", now, 10, _LEASE) == []
        # an expired lease is free again
        later = now + _LEASE + timedelta(seconds=1)
        again = await storage.claim_schedules("w2", later, 1, _LEASE)
        assert [s.name for s in again] == ["late"]
        assert await storage.next_schedule_at() == now - timedelta(seconds=5)

    async def test_advance_needs_the_lease_and_the_expected_tick(self, storage: Storage) -> None:
        now = utcnow()
        nxt = now + timedelta(minutes=1)
        await storage.put_schedule(schedule("s", next_fire_at=now))
        # without the lease: nothing written
        assert not await storage.advance_schedule("s", "w1", now, nxt, now, "r1")
        (_claimed,) = await storage.claim_schedules("w1", now, 10, _LEASE)
        assert not await storage.advance_schedule("s", "w2", now, nxt, now, "r1")
        assert await storage.advance_schedule("s", "w1", now, nxt, now, "r1")
        got = await storage.get_schedule("s")
        assert (got.next_fire_at, got.last_fire_at, got.last_run_id) == (nxt, now, "r1")
        # the lease was dropped: due again at the next tick, for anyone
        assert [s.name for s in await storage.claim_schedules("w3", nxt, 10, _LEASE)] == ["s"]

    async def test_advance_after_an_edit_writes_nothing_but_frees_the_lease(
        self, storage: Storage
    ) -> None:
        now = utcnow()
        await storage.put_schedule(schedule("s", next_fire_at=now))
        await storage.claim_schedules("w1", now, 10, _LEASE)
        edited = schedule("s", cron="*/5 * * * *", next_fire_at=now + timedelta(seconds=1))
        await storage.put_schedule(edited)  # the lease stays while the row is replaced
        two = now + timedelta(seconds=2)
        assert await storage.claim_schedules("w2", two, 10, _LEASE) == []
        assert not await storage.advance_schedule(
            "s", "w1", now, now + timedelta(minutes=1), now, "r1"
        )
        assert await storage.get_schedule("s") == edited
        due = await storage.claim_schedules("w2", two, 10, _LEASE)
        assert [s.name for s in due] == ["s"]

    async def test_concurrent_claims_lease_each_schedule_once(self, storage: Storage) -> None:
        now = utcnow()
        for i in range(5):
            await storage.put_schedule(schedule(f"s{i}", next_fire_at=now))
        got: list[str] = []

        async def claim(owner: str) -> None:
            got.extend(s.name for s in await storage.claim_schedules(owner, now, 10, _LEASE))

        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(claim, f"w{i}")
        assert sorted(got) == [f"s{i}" for i in range(5)]

    async def test_next_schedule_at_skips_paused_and_empty(self, storage: Storage) -> None:
        assert await storage.next_schedule_at() is None
        now = utcnow()
        await storage.put_schedule(schedule("p", next_fire_at=now, paused=True))
        assert await storage.next_schedule_at() is None
        await storage.put_schedule(schedule("a", next_fire_at=now + timedelta(seconds=3)))
        assert await storage.next_schedule_at() == now + timedelta(seconds=3)


@pytest.mark.anyio
class StepSlotStorageCases:
    """Places of step queues: ``acquire_step_slot``, ``renew_step_slot``, ``release_step_slot``."""

    async def test_concurrency_of_step_places(self, storage: Storage) -> None:
        now = utcnow()
        two = QueueLimits(concurrency=2)
        assert await storage.acquire_step_slot("api", "a", two, now, _LEASE)
        assert await storage.acquire_step_slot("api", "b", two, now, _LEASE)
        assert not await storage.acquire_step_slot("api", "c", two, now, _LEASE)
        assert await storage.acquire_step_slot("other", "c", two, now, _LEASE)  # another queue
        # a holder asking again keeps its place (and renews it)
        assert await storage.acquire_step_slot("api", "a", two, now, _LEASE)
        await storage.release_step_slot("api", "a")
        assert await storage.acquire_step_slot("api", "c", two, now, _LEASE)
        assert not await storage.acquire_step_slot("api", "a", two, now, _LEASE)

    async def test_an_expired_place_is_free_and_renewal_extends_it(self, storage: Storage) -> None:
        now = utcnow()
        one = QueueLimits(concurrency=1)
        assert await storage.acquire_step_slot("api", "a", one, now, _LEASE)
        later = now + timedelta(seconds=20)
        assert await storage.renew_step_slot("api", "a", later + _LEASE)
        assert not await storage.acquire_step_slot("api", "b", one, now + _LEASE, _LEASE)
        expired = later + _LEASE + timedelta(seconds=1)
        assert await storage.acquire_step_slot("api", "b", one, expired, _LEASE)
        assert not await storage.renew_step_slot("api", "missing", expired)
        await storage.release_step_slot("api", "b")
        assert not await storage.renew_step_slot("api", "b", expired + _LEASE)

    async def test_rate_of_step_places_counts_acquisitions(self, storage: Storage) -> None:
        t0 = utcnow()
        rate = QueueLimits(rate=(2, timedelta(seconds=10)))
        assert await storage.acquire_step_slot("api", "a", rate, t0, _LEASE)
        assert await storage.acquire_step_slot("api", "b", rate, t0, _LEASE)
        await storage.release_step_slot("api", "a")
        await storage.release_step_slot("api", "b")
        assert not await storage.acquire_step_slot(
            "api", "c", rate, t0 + timedelta(seconds=9), _LEASE
        )
        after = t0 + timedelta(seconds=10, milliseconds=1)
        assert await storage.acquire_step_slot("api", "c", rate, after, _LEASE)

    async def test_concurrent_acquisitions_respect_the_limit(self, storage: Storage) -> None:
        now = utcnow()
        three = QueueLimits(concurrency=3)
        got: list[bool] = []

        async def take(holder: str) -> None:
            got.append(await storage.acquire_step_slot("api", holder, three, now, _LEASE))

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(take, f"h{i}")
        assert got.count(True) == 3

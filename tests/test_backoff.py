"""The one back-off rule (pyworkflow.backoff): growth, cap, jitter, reset and deadlines."""

from __future__ import annotations

import time

import pytest

from pyworkflow.backoff import Backoff


def test_delays_grow_by_factor_and_cap() -> None:
    backoff = Backoff(initial=0.1, factor=2.0, cap=0.5)
    delays = [backoff.next_delay() for _ in range(6)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, 0.5])
    assert backoff.attempts == 6


def test_defaults_are_the_storage_retry_rule() -> None:
    """0.05 s doubling to 2 s: what the Redis and PostgreSQL retry loops document."""
    backoff = Backoff()
    delays = [backoff.next_delay() for _ in range(8)]
    assert delays == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])


def test_other_factor() -> None:
    backoff = Backoff(initial=0.005, factor=1.5, cap=0.25)
    delays = [backoff.next_delay() for _ in range(12)]
    assert delays[:3] == pytest.approx([0.005, 0.0075, 0.01125])
    assert max(d for d in delays if d is not None) == pytest.approx(0.25)


def test_reset_starts_again_from_initial() -> None:
    backoff = Backoff(initial=0.1, cap=5.0)
    for _ in range(4):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(0.1)
    assert backoff.next_delay() == pytest.approx(0.2)
    assert backoff.attempts == 6  # attempts count every wait handed out


def test_jitter_stays_in_bounds() -> None:
    backoff = Backoff(initial=1.0, factor=1.0, cap=1.0, jitter=0.25)
    delays = [backoff.next_delay() for _ in range(500)]
    assert all(d is not None and 0.75 <= d <= 1.25 for d in delays)
    assert len(set(delays)) > 1  # it does spread


def test_jitter_spreads_the_capped_delay() -> None:
    backoff = Backoff(initial=1.0, factor=10.0, cap=2.0, jitter=0.1)
    backoff.next_delay()
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(d is not None and 1.8 <= d <= 2.2 for d in delays)


def test_no_timeout_never_gives_up() -> None:
    backoff = Backoff(cap=0.01)
    assert all(backoff.next_delay() is not None for _ in range(1000))
    assert backoff.deadline is None


def test_shorten_cuts_the_last_wait_to_the_deadline() -> None:
    backoff = Backoff(initial=10.0, cap=10.0, timeout=0.5)
    delay = backoff.next_delay()
    assert delay is not None and 0 < delay <= 0.5


def test_shorten_stops_once_the_deadline_passed() -> None:
    backoff = Backoff(timeout=0.0)
    assert backoff.next_delay() is None
    assert backoff.attempts == 0


def test_give_up_refuses_a_wait_past_the_deadline() -> None:
    backoff = Backoff(initial=1.0, cap=1.0, timeout=0.5, at_deadline="give_up")
    assert backoff.next_delay() is None
    fits = Backoff(initial=0.2, cap=1.0, timeout=0.5, at_deadline="give_up")
    assert fits.next_delay() == pytest.approx(0.2)
    assert fits.next_delay() == pytest.approx(0.4)  # whole, never shortened
    assert fits.next_delay() is None  # 0.8 s would end past the deadline
    assert fits.attempts == 2


def test_deadline_counts_from_construction_and_survives_reset() -> None:
    before = time.monotonic()
    backoff = Backoff(timeout=30.0)
    assert backoff.deadline is not None
    assert before + 30.0 <= backoff.deadline <= time.monotonic() + 30.0
    deadline = backoff.deadline
    backoff.next_delay()
    backoff.reset()
    assert backoff.deadline == deadline

"""``LISTEN`` on the wake-up channel: a dedicated connection that survives restarts.

:meth:`WakeListener.run` is a background task of the storage: it runs in
the task group the storage was opened with and ends when that scope is
cancelled (``PostgresStorage.close``), closing its connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
from loguru import logger

from pyworkflow.backoff import Backoff

__all__ = ["WakeListener", "parse_wake"]

#: Seconds between liveness checks of the listening connection.
PING_INTERVAL = 5.0


def parse_wake(payload: str) -> datetime | None:
    """The wake time in a notification payload (epoch seconds), None if unreadable."""
    try:
        return datetime.fromtimestamp(float(payload), UTC)
    except (ValueError, OverflowError, OSError):
        return None


class WakeListener:
    """Keeps one asyncpg connection LISTENing on ``channel`` and reports wake-ups.

    ``on_wake(at)`` is called on the event loop for each notification, and
    with None after every (re)connection: notifications sent while nobody
    listened are lost, so workers are told to look at once.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[Any]],
        channel: str,
        on_wake: Callable[[datetime | None], None],
    ) -> None:
        self.connect = connect
        self.channel = channel
        self.on_wake = on_wake
        self.connections = 0
        self.log = logger.bind(channel=channel)

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self.on_wake(parse_wake(payload))

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with back-off (0.1 s doubling to 5 s)."""
        backoff = Backoff(initial=0.1, cap=5.0)
        while True:
            try:
                conn = await self.connect()
            except Exception as exc:
                delay = backoff.next_delay()
                assert delay is not None  # no timeout: it never gives up
                self.log.warning("LISTEN connection failed ({}); retrying in {:.1f}s", exc, delay)
                await anyio.sleep(delay)
                continue
            backoff.reset()
            try:
                await self._listen(conn)
            except Exception as exc:
                self.log.warning("LISTEN connection lost ({}); reconnecting", exc)
            finally:
                with contextlib.suppress(Exception):
                    conn.terminate()  # synchronous: the socket is closed even when cancelled

    async def _listen(self, conn: Any) -> None:
        lost = anyio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(self.channel, self._notified)
        self.connections += 1
        if self.connections > 1:
            self.log.info("LISTEN connection restored")
        self.on_wake(None)
        while not conn.is_closed():
            with anyio.move_on_after(PING_INTERVAL):
                await lost.wait()
            if lost.is_set() or conn.is_closed():
                return
            with anyio.fail_after(PING_INTERVAL):
                await conn.execute("SELECT 1")

"""Surviving connection loss: which errors mean "the database went away" (back-off: core).

A transaction that failed before COMMIT was rolled back by the server, so
it is simply run again once the database answers. A connection lost during
COMMIT is *ambiguous* (it may have committed); the storage then checks
whether its write landed before retrying (see ``PostgresStorage._run_op``). The
waits between attempts follow the one back-off rule, :class:`pyworkflow.backoff.Backoff`
(re-exported here for the storage's retry loop).
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from pyworkflow.backoff import Backoff

__all__ = ["Backoff", "is_retryable"]

#: SQLSTATE classes/codes after which the same transaction may simply run again.
_RETRY_STATES = frozenset(
    {
        "57P01",  # admin_shutdown: the server is stopping
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now: the server is starting up
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "53300",  # too_many_connections
    }
)
_DISCONNECT_NAMES = frozenset(
    {
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "InterfaceError",
        "InternalClientError",
        "CannotConnectNowError",
        "AdminShutdownError",
        "CrashShutdownError",
        "TooManyConnectionsError",
    }
)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` means the transaction did not happen and may simply run again.

    True for a lost or refused connection, a server shutting down or
    starting up, and deadlocks or serialization failures (rolled back).
    """
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    for err in _chain(exc):
        if isinstance(err, OSError | ConnectionError | TimeoutError):
            return True
        if type(err).__name__ in _DISCONNECT_NAMES:
            return True
        state = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
        if isinstance(state, str) and (state.startswith("08") or state in _RETRY_STATES):
            return True
    return False

"""Surviving connection loss and lock conflicts: which errors mean "run it again".

A transaction that failed before COMMIT was rolled back by the server (or is
rolled back by the storage), so it is simply run again once the database
answers. A connection lost during COMMIT is *ambiguous* (it may have
committed); the storage then checks whether its write landed before retrying
(see ``MySQLStorage._run_op``). The waits between attempts follow the one
back-off rule, :class:`pyworkflow.backoff.Backoff`.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from pyworkflow.backoff import Backoff

__all__ = ["DEADLOCK", "DUPLICATE_KEY", "Backoff", "error_code", "is_retryable"]

#: ER_DUP_ENTRY: a unique key (primary or secondary) is taken.
DUPLICATE_KEY = 1062
#: ER_LOCK_DEADLOCK: InnoDB rolled the transaction back to break a deadlock.
DEADLOCK = 1213
#: ER_LOCK_WAIT_TIMEOUT: a row lock was not granted in ``innodb_lock_wait_timeout``.
LOCK_WAIT_TIMEOUT = 1205

#: Server and client error numbers after which the same transaction may run again.
_RETRY_CODES = frozenset(
    {
        DEADLOCK,
        LOCK_WAIT_TIMEOUT,
        1040,  # ER_CON_COUNT_ERROR: too many connections
        1053,  # ER_SERVER_SHUTDOWN: the server is shutting down
        1077,  # ER_NORMAL_SHUTDOWN
        1078,  # ER_GOT_SIGNAL
        1079,  # ER_SHUTDOWN_COMPLETE
        1080,  # ER_FORCING_CLOSE
        1152,  # ER_ABORTING_CONNECTION
        1927,  # ER_CONNECTION_KILLED (MariaDB)
        2002,  # CR_CONNECTION_ERROR (socket)
        2003,  # CR_CONN_HOST_ERROR: cannot connect
        2006,  # CR_SERVER_GONE_ERROR
        2013,  # CR_SERVER_LOST: lost connection during query
        2014,  # CR_COMMANDS_OUT_OF_SYNC (a connection cut mid-reply)
        2055,  # CR_SERVER_LOST_EXTENDED
        4031,  # ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8)
    }
)
_DISCONNECT_NAMES = frozenset({"InterfaceError", "IncompleteReadError"})


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number of ``exc`` or of the driver error it wraps (None if none)."""
    for err in _chain(exc):
        err = getattr(err, "orig", None) or err
        args = getattr(err, "args", ())
        if args and isinstance(args[0], int) and not isinstance(args[0], bool):
            return args[0]
    return None


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` means the transaction did not happen and may simply run again.

    True for a lost or refused connection, a server shutting down or
    starting, a deadlock and a lock wait timeout (the storage rolls back).
    """
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    for err in _chain(exc):
        orig = getattr(err, "orig", None)
        for candidate in (err, orig):
            if candidate is None:
                continue
            if isinstance(candidate, OSError | ConnectionError | TimeoutError | EOFError):
                return True
            if type(candidate).__name__ in _DISCONNECT_NAMES:
                return True
            args = getattr(candidate, "args", ())
            if args and isinstance(args[0], int) and args[0] in _RETRY_CODES:
                return True
    return False

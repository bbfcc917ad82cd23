"""The rules of step checkpoints every backend shares: argument checks, size limit, fencing.

A step attempt saves its progress with ``get_step_context().checkpoint(state)``
(:mod:`pyworkflow.checkpoints`); storage keeps one checkpoint per
``(run_id, step_id)`` (:meth:`Storage.save_step_checkpoint
<pyworkflow.storage.base.Storage.save_step_checkpoint>`).

The fencing rule (:func:`supersedes`): a checkpoint replaces the stored one
only if its attempt is the stored one's or a later one. A zombie attempt (its
worker lost the lease, another worker took the step over with the next
attempt number) that saves after the newer attempt did is refused, so it
cannot roll the newer attempt's progress back.
"""

from __future__ import annotations

from pyworkflow.errors import PayloadTooLargeError

__all__ = ["MAX_ATTEMPT", "check_checkpoint", "check_checkpoint_key", "supersedes"]

#: The largest attempt number (every backend stores 64-bit integers).
MAX_ATTEMPT = 2**62


def check_checkpoint_key(run_id: object, step_id: object) -> None:
    """Refuse a run id or step id that is not a non-empty str (``TypeError``/``ValueError``)."""
    for name, value in (("run id", run_id), ("step id", step_id)):
        if not isinstance(value, str):
            raise TypeError(f"a {name} must be a str, not {type(value).__name__}")
        if not value:
            raise ValueError(f"a {name} must not be empty")


def check_checkpoint(
    run_id: object, step_id: object, attempt: object, data: object, limit: int
) -> None:
    """Refuse a checkpoint ``Storage.save_step_checkpoint`` may not store.

    ``TypeError`` for ids or ``data`` that are not str or an ``attempt`` that
    is not an int; ``ValueError`` for an empty id or an attempt below 1 (or
    over :data:`MAX_ATTEMPT`);
    :class:`~pyworkflow.errors.PayloadTooLargeError` naming the step when
    ``data`` is over ``limit`` UTF-8 bytes.
    """
    check_checkpoint_key(run_id, step_id)
    if not isinstance(attempt, int) or isinstance(attempt, bool):
        raise TypeError(f"attempt must be an int, not {type(attempt).__name__}")
    if not 1 <= attempt <= MAX_ATTEMPT:
        raise ValueError(f"attempt must be from 1 to 2**62, got {attempt}")
    if not isinstance(data, str):
        raise TypeError(f"a checkpoint's data must be a serialized str, not {type(data).__name__}")
    size = len(data) if data.isascii() else len(data.encode())
    if size > limit:
        raise PayloadTooLargeError(
            f"the checkpoint of step {step_id} of run {run_id} is {size} bytes, over the "
            f"payload limit of {limit} bytes (config key 'max_payload_bytes')"
        )


def supersedes(attempt: int, stored_attempt: int | None) -> bool:
    """Whether a checkpoint of ``attempt`` replaces one stored by ``stored_attempt``.

    Yes when nothing is stored or ``attempt >= stored_attempt`` (a later save
    of the same attempt replaces its earlier one); no for an older attempt.
    """
    return stored_attempt is None or attempt >= stored_attempt

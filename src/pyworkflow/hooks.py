"""Hooks: let the outside world send payloads into a waiting workflow."""

from __future__ import annotations

from collections.abc import Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pyworkflow.errors import HookTimeoutError
from pyworkflow.jsoninput import is_text

if TYPE_CHECKING:
    from pyworkflow.context import WorkflowContext

__all__ = ["MAX_TOKEN_LENGTH", "MIN_SECRET_LENGTH", "Hook", "check_hook_secret", "check_hook_token"]

T = TypeVar("T")


class Hook(Generic[T]):
    """A durable mailbox of a workflow, addressed by ``token`` (and ``url``).

    ``await hook`` waits (the run may suspend) for the next payload;
    ``async for payload in hook`` receives several, in the order they were
    recorded; ``async with create_hook() as hook`` disposes it on exit, after
    which posting to its token is a not-found error. Hooks still live when
    the run ends are disposed then.

    A hook created with ``timeout`` lives that long: at its deadline it is
    disposed, ``await hook`` (once the payloads recorded before the deadline
    are taken) raises :class:`~pyworkflow.errors.HookTimeoutError`, and
    ``async for`` ends.
    """

    def __init__(self, ctx: WorkflowContext, cid: str, token: str, url: str | None) -> None:
        self._ctx = ctx
        self._cid = cid
        self.token = token
        self.url = url

    def __repr__(self) -> str:
        return f"<Hook {self.token!r}>"

    async def receive(self) -> T:
        """The next payload; suspends the run until one arrives.

        Raises :class:`~pyworkflow.errors.HookTimeoutError` when the hook's
        ``timeout`` ran out and no payload recorded before it is left.
        """
        value: T = await self._ctx.hook_receive(self._cid)
        return value

    def __await__(self) -> Generator[Any, None, T]:
        return self.receive().__await__()

    def __aiter__(self) -> Hook[T]:
        return self

    async def __anext__(self) -> T:
        if self._ctx.hook_disposed(self._cid):
            raise StopAsyncIteration
        try:
            return await self.receive()
        except HookTimeoutError:  # a hook with a timeout: iteration ends at its deadline
            raise StopAsyncIteration from None

    def dispose(self) -> None:
        """Stop accepting payloads (records ``hook_disposed``)."""
        self._ctx.hook_dispose(self._cid)

    async def __aenter__(self) -> Hook[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.dispose()


#: Longest hook token accepted (characters).
MAX_TOKEN_LENGTH = 512
#: Shortest hook secret accepted (characters); ``secrets.token_urlsafe(32)`` gives 43.
MIN_SECRET_LENGTH = 16


def check_hook_token(token: object) -> str:
    """A caller-chosen hook token: 1-512 characters of valid Unicode text; else ``ValueError``.

    A token that could never be stored (a lone surrogate such as ``"\\ud800"``,
    a non-string) fails the workflow at ``create_hook`` with this error,
    instead of an activation that crashes on every retry.
    """
    if not isinstance(token, str):
        raise TypeError(f"hook token must be a string, got {type(token).__name__}")
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise ValueError(f"hook token must be 1-{MAX_TOKEN_LENGTH} characters, got {len(token)}")
    if not is_text(token) or any(ord(c) < 0x20 or ord(c) == 0x7F for c in token):
        raise ValueError(
            f"hook token {token!r} is not valid text: it holds a lone surrogate or a control "
            "character"
        )
    return token


def check_hook_secret(secret: object) -> str:
    """A hook's HMAC secret: at least 16 characters of valid text; else ``ValueError``.

    The message never includes the secret.
    """
    if not isinstance(secret, str):
        raise TypeError(f"hook secret must be a string, got {type(secret).__name__}")
    if len(secret) < MIN_SECRET_LENGTH or not secret.strip():
        raise ValueError(
            f"hook secret is too short ({len(secret)} characters): use at least "
            f"{MIN_SECRET_LENGTH} random characters, e.g. secrets.token_urlsafe(32); an empty "
            "secret (an unset variable) does not turn signing off"
        )
    if not is_text(secret):
        raise ValueError("hook secret is not valid text (it holds a lone surrogate)")
    return secret

"""Hooks: let the outside world send payloads into a waiting workflow."""

from __future__ import annotations

from collections.abc import Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from pyworkflow.context import WorkflowContext

__all__ = ["Hook"]

T = TypeVar("T")


class Hook(Generic[T]):
    """A durable mailbox of a workflow, addressed by ``token`` (and ``url``).

    ``await hook`` waits (the run may suspend) for the next payload;
    ``async for payload in hook`` receives several, in the order they were
    recorded; ``async with create_hook() as hook`` disposes it on exit, after
    which posting to its token is a not-found error. Hooks still live when
    the run ends are disposed then.
    """

    def __init__(self, ctx: WorkflowContext, cid: str, token: str, url: str | None) -> None:
        self._ctx = ctx
        self._cid = cid
        self.token = token
        self.url = url

    def __repr__(self) -> str:
        return f"<Hook {self.token!r}>"

    async def receive(self) -> T:
        """The next payload; suspends the run until one arrives."""
        value: T = await self._ctx.hook_receive(self._cid)
        return value

    def __await__(self) -> Generator[Any, None, T]:
        return self.receive().__await__()

    def __aiter__(self) -> Hook[T]:
        return self

    async def __anext__(self) -> T:
        if self._ctx.hook_disposed(self._cid):
            raise StopAsyncIteration
        return await self.receive()

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

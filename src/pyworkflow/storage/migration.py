"""Backends with a versioned schema: its status and its upgrade, for ``pyworkflow storage``.

A backend whose tables follow numbered migrations (PostgreSQL, MySQL)
implements :class:`MigratingStorage` next to :class:`~pyworkflow.storage.base.Storage`.
Both methods work on an *unopened* storage (they make their own connection),
so an operator can inspect and upgrade a database whose workers run with
``migrate = false``. Backends that create and upgrade their tables when
opened (SQLite) or have none (memory, File, Redis) do not implement it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import attrs

__all__ = ["MigratingStorage", "SchemaStatus", "SchemaStep"]


@attrs.frozen
class SchemaStep:
    """One migration: its version number and what it does."""

    version: int
    description: str


@attrs.frozen
class SchemaStatus:
    """Where a database's schema stands: its version, this code's latest, what is pending."""

    current: int
    latest: int
    pending: tuple[SchemaStep, ...]

    @property
    def up_to_date(self) -> bool:
        """Whether nothing is pending (and the database is not newer than this code)."""
        return self.current == self.latest


@runtime_checkable
class MigratingStorage(Protocol):
    """A storage whose schema has numbered migrations (see the module's docstring)."""

    async def schema_status(self) -> SchemaStatus:
        """The schema's version, the latest this code knows, and the migrations pending."""
        ...

    async def migrate_schema(
        self, on_applied: Callable[[SchemaStep], None] | None = None
    ) -> list[int]:
        """Apply the pending migrations in order; call ``on_applied`` after each.

        Returns the versions applied (empty if none was pending). Raises
        :class:`~pyworkflow.errors.ConfigError` for a database newer than this code.
        """
        ...

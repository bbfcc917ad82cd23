"""The ``skeleton://`` storage: its options, its URL, and the backend itself.

The backend is :class:`~pyworkflow.storage.memory.MemoryStorage` with a URL
parser, one option and one overridden method on top: everything lives in this
process and is lost when it ends. It shows the shape of a storage plugin, not
a durable store. A real backend subclasses :class:`~pyworkflow.storage.base.Storage`
instead and implements its abstract methods against a database; the comments
marked "A real backend" say what changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import attrs
from loguru import logger
from pyworkflow.config import Settings
from pyworkflow.errors import ConfigError
from pyworkflow.models import NewEvent, Run, RunPatch
from pyworkflow.plugin_options import option_bool, parse_plugin_table
from pyworkflow.storage.memory import MemoryStorage

__all__ = ["SkeletonSettings", "SkeletonStorage", "parse_storage_url"]

#: One parser per option of ``[tool.pyworkflow.skeleton]``; an option not listed here is
#: refused with a ConfigError naming it (``parse_plugin_table`` does that).
_PARSERS: dict[str, Callable[[Any], Any]] = {
    "log_writes": option_bool,
}


@attrs.frozen(kw_only=True)
class SkeletonSettings:
    """Options of the skeleton storage, from ``[tool.pyworkflow.skeleton]``.

    Each can also come from ``PYWORKFLOW_SKELETON__<OPTION>`` or
    ``configure(skeleton={...})``. A real backend puts its pool size,
    timeouts, schema name... here.
    """

    #: Log every write (``create_run``, ``append_events``) at DEBUG, with the run id bound.
    log_writes: bool = False

    @classmethod
    def from_settings(cls, settings: Settings | None) -> SkeletonSettings:
        """Parse the ``skeleton`` plugin table; a bad key or value is a ConfigError naming it."""
        if settings is None:
            return cls()
        return cls(**parse_plugin_table(settings, "skeleton", _PARSERS))


def parse_storage_url(url: str) -> str:
    """The store's label: ``skeleton://`` -> ``""``, ``skeleton://orders`` -> ``"orders"``.

    A real backend takes its host, port, database and credentials from here.
    Anything this backend would ignore is refused, so a typo is not silent.
    """
    parts = urlsplit(url)
    if parts.scheme != "skeleton" or parts.path.strip("/") or parts.query or parts.fragment:
        raise ConfigError(
            f"invalid skeleton storage URL {url!r} (config key 'storage'): "
            "use skeleton:// or skeleton://<label>, with no path or query"
        )
    return parts.netloc


class SkeletonStorage(MemoryStorage):
    """An in-process storage served as ``skeleton://[label]``: MemoryStorage plus options.

    A real backend subclasses :class:`~pyworkflow.storage.base.Storage`; it
    opens its connections in ``open(task_group)``, closes them in ``close()``,
    and makes every write that depends on state (append, claim, lease) atomic
    across processes, which a lock in one process (what MemoryStorage has)
    cannot do. ``pyworkflow.testing.StorageConformance`` checks all of that.
    """

    def __init__(self, url: str = "skeleton://", settings: Settings | None = None) -> None:
        self.label = parse_storage_url(url)
        self.options = SkeletonSettings.from_settings(settings)
        super().__init__(url)

    async def create_run(self, run: Run, events: Sequence[NewEvent]) -> tuple[Run, bool]:
        """Store a new run with its first events (MemoryStorage's), logged if ``log_writes``."""
        stored, created = await super().create_run(run, events)
        if self.options.log_writes and created:
            logger.bind(run_id=stored.run_id, store=self.label).debug("skeleton: run created")
        return stored, created

    async def append_events(
        self,
        run_id: str,
        expected_seq: int,
        events: Sequence[NewEvent],
        patch: RunPatch | None = None,
        *,
        owner: str | None = None,
    ) -> int:
        """Append events if the log ends at ``expected_seq`` (MemoryStorage's), logged too."""
        last_seq = await super().append_events(run_id, expected_seq, events, patch, owner=owner)
        if self.options.log_writes:
            logger.bind(run_id=run_id, store=self.label, seq=last_seq).debug(
                "skeleton: {} event(s) appended", len(events)
            )
        return last_seq

"""A StateStore kept in this process's memory: dicts and lists, no SQL, no file, no server.

Why it exists: the sync logic (intake, flushes, pulls, dbsync) is tested against the store it
talks to, and a SQLite file per test or a MariaDB server makes those tests slow and heavy.
This store gives them the same behaviour in microseconds. It is the third implementation of
the protocols in ``syncd/store/protocols.py`` and passes the same contract suite as the SQL stores
(``tests/test_store_contract.py``), so what the sync logic relies on holds here too: pending
entries coalesce per record, a change during processing makes a second entry, failed retries
merge under newer values, leases belong to their owner, values come back as JSON gave them.

What it is not: durable (nothing outlives the process), shared (one instance, one process)
or thread-safe. Every method finishes without giving the event loop away, so each is atomic
on its loop as a SQL transaction is, and no lock is needed. Data lives in the instance: a
closed and reopened store still holds it, as a file would; a closed one refuses calls with
StoreError, as a SQL store without its connection does.
"""

from __future__ import annotations

from syncd.store.memory.control import ControlOps
from syncd.store.memory.links import LinkOps
from syncd.store.memory.runs import RunOps
from syncd.store.memory.state import QueueDeletion
from syncd.store.sql.migrations import LATEST_VERSION


class MemoryStore(LinkOps, RunOps, ControlOps):
    """StateStore in memory, for tests of the sync logic (see the module docstring)."""

    kind = "memory"

    async def open(self) -> None:
        """Make the store usable (again); its data is kept across close and open."""
        self._open = True

    async def close(self) -> None:
        """Refuse further calls until reopened; safe to call twice."""
        self._open = False

    async def ping(self) -> None:
        """Raise StoreError when the store is closed."""
        self._live()

    async def schema_version(self) -> int:
        """The latest version: there is no schema to migrate, it is always current."""
        self._live()
        return LATEST_VERSION


__all__ = ["MemoryStore", "QueueDeletion"]

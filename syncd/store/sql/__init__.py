"""The SQL state store: every query of both backends, behind one class.

`SqlStore` implements the whole StateStore protocol on top of `SqlBase._run` (one function,
one transaction). A driver subclass (``sqlite.py``, ``mysql.py``) stays thin: it connects,
runs transactions with its locking and retry rules, and turns driver errors into StoreError.
"""

from __future__ import annotations

from syncd.errors import StoreError
from syncd.store.sql.claims import ClaimOps
from syncd.store.sql.control import ControlOps
from syncd.store.sql.dbsync import DbsyncOps
from syncd.store.sql.dialect import Tx, utcnow
from syncd.store.sql.links import LinkOps
from syncd.store.sql.migrations import LATEST_VERSION, Migration, pending_migrations
from syncd.store.sql.overview import OverviewOps
from syncd.store.sql.queue_admin import QueueAdminOps
from syncd.store.sql.runs import RunOps
from syncd.store.sql.schema import schema_version_ddl


class SqlStore(QueueAdminOps, ClaimOps, LinkOps, RunOps, ControlOps, OverviewOps, DbsyncOps):
    """All SQL of the state store; subclasses provide connections and transactions."""

    async def ping(self) -> None:
        """Raise StoreError when the store cannot be reached."""

        async def op(tx: Tx) -> None:
            await tx.fetchall("SELECT 1")

        await self._run(op, write=False)

    async def schema_version(self) -> int:
        """The applied schema version (0 on an empty database)."""

        async def op(tx: Tx) -> int:
            return await self._read_version(tx)

        return await self._run(op, write=False)

    @staticmethod
    async def _read_version(tx: Tx) -> int:
        rows = await tx.fetchall("SELECT MAX(version) FROM schema_version")
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    async def _migrate(self) -> None:
        """Create the version table and apply each missing step in its own transaction."""

        async def create(tx: Tx) -> None:
            for stmt in schema_version_ddl(self.dialect.name):
                await tx.execute(stmt)

        await self._run(create)
        current = await self.schema_version()
        if current > LATEST_VERSION:
            raise StoreError(
                f"the database schema is at version {current}, newer than this syncd"
                f" understands ({LATEST_VERSION}); upgrade syncd"
            )
        for step in pending_migrations(current):
            await self._run(self._step(step))

    def _step(self, step: Migration) -> _StepOp:
        return _StepOp(self, step)


class _StepOp:
    """One migration step as a transaction function; skips itself if already applied."""

    def __init__(self, store: SqlStore, step: Migration) -> None:
        self._store = store
        self._step = step

    async def __call__(self, tx: Tx) -> None:
        if await SqlStore._read_version(tx) >= self._step.version:
            return
        for stmt in self._step.statements(self._store.dialect.name):
            await tx.execute(stmt)
        await tx.execute(
            "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
            (self._step.version, self._step.description, self._store.dialect.ts(utcnow())),
        )

"""Small shared state in SQL: named cursors, integration errors and job locks."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from syncd.model import Direction, ErrorCategory
from syncd.store.sql.dialect import (
    SqlBase,
    Tx,
    dump_json,
    load_json,
    utcnow,
)
from syncd.store.types import (
    InstanceBeat,
    IntegrationErrorRecord,
)


class ControlOps(SqlBase):
    """The CursorStore, IntegrationErrorStore, JobLockStore and InstanceStore protocols."""

    # cursors -------------------------------------------------------------------------------
    async def get_cursor(self, name: str) -> str | None:
        """A named cursor (e.g. ``outbound:contact``)."""

        async def op(tx: Tx) -> str | None:
            row = await self._fetchone(
                tx, "SELECT cursor_value FROM cursors WHERE name = ?", (name,)
            )
            return str(row[0]) if row is not None else None

        return await self._run(op, write=False)

    async def set_cursor(self, name: str, value: str) -> None:
        """Store a named cursor."""
        sql = self.dialect.upsert(
            "cursors",
            ("name", "cursor_value", "updated_at"),
            ("name",),
            ("cursor_value", "updated_at"),
        )

        async def op(tx: Tx) -> None:
            await tx.execute(sql, (name, value, self.dialect.ts(utcnow())))

        await self._run(op)

    # integration errors --------------------------------------------------------------------
    async def set_integration_error(
        self, direction: Direction, category: ErrorCategory, message: str
    ) -> None:
        """Record (or refresh) an integration-wide error; `since` keeps its first time."""
        sql = self.dialect.upsert(
            "integration_errors",
            ("direction", "category", "message", "since", "updated_at"),
            ("direction", "category"),
            ("message", "updated_at"),
        )

        async def op(tx: Tx) -> None:
            now = self.dialect.ts(utcnow())
            await tx.execute(sql, (str(direction), str(category), message, now, now))

        await self._run(op)

    async def clear_integration_error(
        self, direction: Direction, category: ErrorCategory | None = None
    ) -> int:
        """Clear a direction's integration errors (one category or all); how many."""

        async def op(tx: Tx) -> int:
            if category is None:
                return await tx.execute(
                    "DELETE FROM integration_errors WHERE direction = ?", (str(direction),)
                )
            return await tx.execute(
                "DELETE FROM integration_errors WHERE direction = ? AND category = ?",
                (str(direction), str(category)),
            )

        return await self._run(op)

    async def integration_errors(self) -> list[IntegrationErrorRecord]:
        """Active integration-wide errors."""

        async def op(tx: Tx) -> list[IntegrationErrorRecord]:
            rows = await tx.fetchall(
                "SELECT direction, category, message, since, updated_at FROM integration_errors"
                " ORDER BY since, direction, category"
            )
            out = []
            for r in rows:
                since, updated = self.dialect.from_ts(r[3]), self.dialect.from_ts(r[4])
                assert since is not None and updated is not None
                out.append(
                    IntegrationErrorRecord(
                        Direction(r[0]), ErrorCategory(r[1]), r[2], since, updated
                    )
                )
            return out

        return await self._run(op, write=False)

    # coordination --------------------------------------------------------------------------
    async def try_job_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take a named lock for a scheduled job unless another live owner holds it.

        The holder may call again to extend its lease; an expired lock is taken over.
        """
        d = self.dialect

        async def op(tx: Tx) -> bool:
            now = utcnow()
            expires = d.ts(now + timedelta(seconds=ttl_seconds))
            row = await self._fetchone(
                tx, f"SELECT owner, expires_at FROM job_locks WHERE name = ?{d.for_update}", (name,)
            )
            if row is None:
                await tx.execute(
                    "INSERT INTO job_locks (name, owner, expires_at, acquired_at)"
                    " VALUES (?, ?, ?, ?)",
                    (name, owner, expires, d.ts(now)),
                )
                return True
            held_until = d.from_ts(row[1])
            if row[0] == owner:
                await tx.execute(
                    "UPDATE job_locks SET expires_at = ? WHERE name = ?", (expires, name)
                )
                return True
            if held_until is not None and held_until > now:
                return False
            await tx.execute(
                "UPDATE job_locks SET owner = ?, expires_at = ?, acquired_at = ? WHERE name = ?",
                (owner, expires, d.ts(now), name),
            )
            return True

        return await self._run(op, conflict_retry=True)

    async def extend_job_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Extend a lock `owner` still holds; False once another took it or it was released."""
        expires = self.dialect.ts(utcnow() + timedelta(seconds=ttl_seconds))

        async def op(tx: Tx) -> bool:
            n = await tx.execute(
                "UPDATE job_locks SET expires_at = ? WHERE name = ? AND owner = ?",
                (expires, name, owner),
            )
            return n == 1

        return await self._run(op)

    async def release_job_lock(self, name: str, owner: str) -> None:
        """Release a named job lock held by `owner`."""

        async def op(tx: Tx) -> None:
            await tx.execute("DELETE FROM job_locks WHERE name = ? AND owner = ?", (name, owner))

        await self._run(op)

    # instances -----------------------------------------------------------------------------
    async def beat(self, instance_id: str, started_at: datetime, view: Mapping[str, Any]) -> None:
        """Record that an instance is alive now, with its view of the shared state."""
        d = self.dialect
        sql = d.upsert(
            "instances",
            ("instance_id", "started_at", "seen_at", "view"),
            ("instance_id",),
            ("started_at", "seen_at", "view"),
        )

        async def op(tx: Tx) -> None:
            await tx.execute(
                sql, (instance_id, d.ts(started_at), d.ts(utcnow()), dump_json(dict(view)))
            )

        await self._run(op)

    async def instances(self) -> list[InstanceBeat]:
        """Every instance that beat and was not forgotten, most recently seen first."""
        d = self.dialect

        async def op(tx: Tx) -> list[InstanceBeat]:
            rows = await tx.fetchall(
                "SELECT instance_id, started_at, seen_at, view FROM instances"
                " ORDER BY seen_at DESC, instance_id"
            )
            out = []
            for r in rows:
                started, seen = d.from_ts(r[1]), d.from_ts(r[2])
                assert started is not None and seen is not None
                out.append(InstanceBeat(str(r[0]), started, seen, load_json(r[3], {})))
            return out

        return await self._run(op, write=False)

    async def forget_instances(self, seen_before: datetime) -> int:
        """Drop instances last seen before a moment (long gone); how many."""

        async def op(tx: Tx) -> int:
            return await tx.execute(
                "DELETE FROM instances WHERE seen_at < ?", (self.dialect.ts(seen_before),)
            )

        return await self._run(op)

    # page sessions -------------------------------------------------------------------------
    async def start_session(self, session_hash: str, expires_at: datetime) -> None:
        """Record a new session (and drop the ones already expired)."""
        d = self.dialect

        async def op(tx: Tx) -> None:
            now = utcnow()
            await tx.execute("DELETE FROM web_sessions WHERE expires_at < ?", (d.ts(now),))
            await tx.execute(
                "INSERT INTO web_sessions (session_hash, created_at, expires_at) VALUES (?, ?, ?)",
                (session_hash, d.ts(now), d.ts(expires_at)),
            )

        await self._run(op)

    async def session_valid(self, session_hash: str) -> bool:
        """True while the session is stored and not expired."""
        d = self.dialect

        async def op(tx: Tx) -> bool:
            row = await self._fetchone(
                tx,
                "SELECT 1 FROM web_sessions WHERE session_hash = ? AND expires_at > ?",
                (session_hash, d.ts(utcnow())),
            )
            return row is not None

        return await self._run(op, write=False)

    async def end_session(self, session_hash: str) -> bool:
        """End a session (logout); whether it was there."""

        async def op(tx: Tx) -> bool:
            n = await tx.execute("DELETE FROM web_sessions WHERE session_hash = ?", (session_hash,))
            return n > 0

        return await self._run(op)

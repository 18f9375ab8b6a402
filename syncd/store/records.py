"""The non-queue half of the SQL store: links, runs, cursors, integration errors, dbsync rows
and job locks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from syncd.model import Direction, ErrorCategory, ObjectType, RunKind, RunTrigger
from syncd.store.base import (
    DbsyncRow,
    IntegrationErrorRecord,
    LinkFilter,
    RecordLink,
    Run,
    RunFailure,
)
from syncd.store.dialect import (
    LIKE_ESCAPE,
    SqlBase,
    Tx,
    chunks,
    dump_json,
    like_pattern,
    load_json,
    marks,
    utcnow,
)

LINK_COLS = (
    "id, object, hub_id, crm_id, email, name, sync_tags, status, content_hash, deleted_side,"
    " last_synced_at, created_at, updated_at"
)
RUN_COLS = (
    "id, kind, run_trigger, name, status, started_at, finished_at, counts, error_message, owner"
)
DBSYNC_COLS = "dbsync, row_key, email, hub_id, content_hash, run_id"


class RecordOps(SqlBase):
    """Links, runs, cursors, integration errors, dbsync rows and job locks."""

    # record links ------------------------------------------------------------------------
    def _link(self, r: Sequence[Any]) -> RecordLink:
        d = self.dialect
        return RecordLink(
            id=int(r[0]),
            object=ObjectType(r[1]),
            hub_id=r[2],
            crm_id=r[3],
            email=r[4],
            name=r[5],
            sync_tags=frozenset(load_json(r[6], [])),
            status=r[7],
            content_hash=r[8],
            deleted_side=r[9],
            last_synced_at=d.from_ts(r[10]),
            created_at=d.from_ts(r[11]),
            updated_at=d.from_ts(r[12]),
        )

    async def upsert_link(self, link: RecordLink) -> int:
        """Insert or update a link (matched by object + hub_id, or object + crm_id).

        On update, a None id, email, name or last_synced_at keeps the stored value; the other
        fields are overwritten (deleted_side=None clears a deletion mark).
        """
        if link.hub_id is None and link.crm_id is None:
            raise ValueError("a link needs a hub_id or a crm_id")
        d = self.dialect
        email = link.email.lower() if link.email else None
        tags = dump_json(sorted(link.sync_tags))

        async def op(tx: Tx) -> int:
            now = d.ts(utcnow())
            row = None
            for col, val in (("hub_id", link.hub_id), ("crm_id", link.crm_id)):
                if val is not None and row is None:
                    row = await self._fetchone(
                        tx,
                        f"SELECT id FROM record_links WHERE object = ? AND {col} = ?{d.for_update}",
                        (str(link.object), val),
                    )
            if row is None:
                return await tx.insert(
                    "INSERT INTO record_links (object, hub_id, crm_id, email, name, sync_tags,"
                    " status, content_hash, deleted_side, last_synced_at, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        str(link.object),
                        link.hub_id,
                        link.crm_id,
                        email,
                        link.name,
                        tags,
                        link.status,
                        link.content_hash,
                        link.deleted_side,
                        d.ts(link.last_synced_at),
                        now,
                        now,
                    ),
                )
            await tx.execute(
                "UPDATE record_links SET hub_id = COALESCE(?, hub_id),"
                " crm_id = COALESCE(?, crm_id), email = COALESCE(?, email),"
                " name = COALESCE(?, name), sync_tags = ?, status = ?, content_hash = ?,"
                " deleted_side = ?, last_synced_at = COALESCE(?, last_synced_at), updated_at = ?"
                " WHERE id = ?",
                (
                    link.hub_id,
                    link.crm_id,
                    email,
                    link.name,
                    tags,
                    link.status,
                    link.content_hash,
                    link.deleted_side,
                    d.ts(link.last_synced_at),
                    now,
                    row[0],
                ),
            )
            return int(row[0])

        return await self._run(op, conflict_retry=True)

    async def get_link(
        self,
        obj: ObjectType,
        *,
        hub_id: str | None = None,
        crm_id: str | None = None,
        email: str | None = None,
    ) -> RecordLink | None:
        """Find a link by hub id, else CRM id, else (case-insensitive) email."""
        probes = [
            (col, val)
            for col, val in (
                ("hub_id", hub_id),
                ("crm_id", crm_id),
                ("email", email.lower() if email else None),
            )
            if val is not None
        ]

        async def op(tx: Tx) -> RecordLink | None:
            for col, val in probes:
                row = await self._fetchone(
                    tx,
                    f"SELECT {LINK_COLS} FROM record_links WHERE object = ? AND {col} = ?"
                    " ORDER BY id DESC LIMIT 1",
                    (str(obj), val),
                )
                if row is not None:
                    return self._link(row)
            return None

        return await self._run(op, write=False)

    async def list_links(
        self, filt: LinkFilter, *, after_id: int | None = None, limit: int = 1000
    ) -> list[RecordLink]:
        """Links matching `filt` in id order, with id > after_id (streamable)."""
        d = self.dialect
        where: list[str] = []
        params: list[Any] = []
        for col, val in (
            ("object", filt.object),
            ("status", filt.status),
            ("deleted_side", filt.deleted_side),
        ):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(str(val))
        if filt.synced_after is not None:
            where.append("last_synced_at >= ?")
            params.append(d.ts(filt.synced_after))
        if filt.synced_before is not None:
            where.append("last_synced_at < ?")
            params.append(d.ts(filt.synced_before))
        if filt.text:
            pattern = like_pattern(filt.text)
            where.append(f"(email LIKE ? {LIKE_ESCAPE} OR LOWER(name) LIKE ? {LIKE_ESCAPE})")
            params += [pattern, pattern]
        if after_id is not None:
            where.append("id > ?")
            params.append(after_id)
        clause = f" WHERE {' AND '.join(where)}" if where else ""

        async def op(tx: Tx) -> list[RecordLink]:
            rows = await tx.fetchall(
                f"SELECT {LINK_COLS} FROM record_links{clause} ORDER BY id LIMIT ?",
                (*params, max(limit, 0)),
            )
            return [self._link(r) for r in rows]

        return await self._run(op, write=False)

    async def link_counts(self) -> dict[tuple[ObjectType, str], int]:
        """Links by object and status."""

        async def op(tx: Tx) -> dict[tuple[ObjectType, str], int]:
            rows = await tx.fetchall(
                "SELECT object, status, COUNT(*) FROM record_links GROUP BY object, status"
            )
            return {(ObjectType(r[0]), str(r[1])): int(r[2]) for r in rows}

        return await self._run(op, write=False)

    # runs ----------------------------------------------------------------------------------
    def _run_row(self, r: Sequence[Any]) -> Run:
        started = self.dialect.from_ts(r[5])
        assert started is not None
        return Run(
            id=int(r[0]),
            kind=RunKind(r[1]),
            trigger=RunTrigger(r[2]),
            name=r[3],
            status=r[4],
            started_at=started,
            finished_at=self.dialect.from_ts(r[6]),
            counts={str(k): int(v) for k, v in load_json(r[7], {}).items()},
            error=r[8],
            owner=r[9],
        )

    async def start_run(
        self, kind: RunKind, trigger: RunTrigger, *, name: str | None = None, owner: str = ""
    ) -> int:
        """Record a run as started; its id."""

        async def op(tx: Tx) -> int:
            return await tx.insert(
                "INSERT INTO runs (kind, run_trigger, name, status, started_at, counts, owner)"
                " VALUES (?, ?, ?, 'running', ?, '{}', ?)",
                (str(kind), str(trigger), name, self.dialect.ts(utcnow()), owner),
            )

        return await self._run(op)

    async def finish_run(
        self, run_id: int, *, counts: Mapping[str, int], status: str, error: str | None = None
    ) -> None:
        """Record a run's end, counts and outcome."""

        async def op(tx: Tx) -> None:
            await tx.execute(
                "UPDATE runs SET status = ?, finished_at = ?, counts = ?, error_message = ?"
                " WHERE id = ?",
                (status, self.dialect.ts(utcnow()), dump_json(dict(counts)), error, run_id),
            )

        await self._run(op)

    async def get_run(self, run_id: int) -> Run | None:
        """One run."""

        async def op(tx: Tx) -> Run | None:
            row = await self._fetchone(tx, f"SELECT {RUN_COLS} FROM runs WHERE id = ?", (run_id,))
            return self._run_row(row) if row is not None else None

        return await self._run(op, write=False)

    async def list_runs(
        self, *, kind: RunKind | None = None, name: str | None = None, limit: int = 50
    ) -> list[Run]:
        """Most recent runs first."""
        where: list[str] = []
        params: list[Any] = []
        if kind is not None:
            where.append("kind = ?")
            params.append(str(kind))
        if name is not None:
            where.append("name = ?")
            params.append(name)
        clause = f" WHERE {' AND '.join(where)}" if where else ""

        async def op(tx: Tx) -> list[Run]:
            rows = await tx.fetchall(
                f"SELECT {RUN_COLS} FROM runs{clause} ORDER BY id DESC LIMIT ?",
                (*params, max(limit, 0)),
            )
            return [self._run_row(r) for r in rows]

        return await self._run(op, write=False)

    async def running_run(self, kind: RunKind, name: str | None) -> Run | None:
        """The run of this kind and name still marked running, if any."""
        name_clause = "name IS NULL" if name is None else "name = ?"
        params: tuple[Any, ...] = (str(kind),) if name is None else (str(kind), name)

        async def op(tx: Tx) -> Run | None:
            row = await self._fetchone(
                tx,
                f"SELECT {RUN_COLS} FROM runs WHERE status = 'running' AND kind = ?"
                f" AND {name_clause} ORDER BY id DESC LIMIT 1",
                params,
            )
            return self._run_row(row) if row is not None else None

        return await self._run(op, write=False)

    async def add_run_failures(self, failures: Sequence[RunFailure]) -> None:
        """Record failed rows/records of a run."""
        if not failures:
            return

        async def op(tx: Tx) -> None:
            await tx.executemany(
                "INSERT INTO run_failures (run_id, failure_key, columns_json, reason, category,"
                " email) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        f.run_id,
                        f.key,
                        dump_json(list(f.columns)),
                        f.reason,
                        str(f.category),
                        f.email,
                    )
                    for f in failures
                ],
            )

        await self._run(op)

    async def run_failures(
        self, run_id: int, *, after: int = 0, limit: int = 1000
    ) -> list[RunFailure]:
        """A run's failures in insertion order, skipping the first `after` of them."""

        async def op(tx: Tx) -> list[RunFailure]:
            rows = await tx.fetchall(
                "SELECT run_id, failure_key, columns_json, reason, category, email"
                " FROM run_failures WHERE run_id = ? ORDER BY id LIMIT ? OFFSET ?",
                (run_id, max(limit, 0), max(after, 0)),
            )
            return [
                RunFailure(
                    run_id=int(r[0]),
                    key=r[1],
                    columns=tuple(load_json(r[2], [])),
                    reason=r[3],
                    category=ErrorCategory(r[4]),
                    email=r[5],
                )
                for r in rows
            ]

        return await self._run(op, write=False)

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

    # dbsync rows ---------------------------------------------------------------------------
    @staticmethod
    def _dbsync_row(r: Sequence[Any]) -> DbsyncRow:
        return DbsyncRow(r[0], r[1], r[2], r[3], r[4], int(r[5]))

    async def dbsync_rows(self, dbsync: str, row_keys: Sequence[str]) -> dict[str, DbsyncRow]:
        """What the last runs wrote for these source rows."""

        async def op(tx: Tx) -> dict[str, DbsyncRow]:
            out: dict[str, DbsyncRow] = {}
            for part in chunks(list(row_keys)):
                rows = await tx.fetchall(
                    f"SELECT {DBSYNC_COLS} FROM dbsync_rows WHERE dbsync = ?"
                    f" AND row_key IN ({marks(len(part))})",
                    (dbsync, *part),
                )
                out.update({r[1]: self._dbsync_row(r) for r in rows})
            return out

        return await self._run(op, write=False)

    async def upsert_dbsync_rows(self, rows: Sequence[DbsyncRow]) -> None:
        """Record what a run wrote (batched)."""
        if not rows:
            return
        sql = self.dialect.upsert(
            "dbsync_rows",
            ("dbsync", "row_key", "email", "hub_id", "content_hash", "run_id"),
            ("dbsync", "row_key"),
            ("email", "hub_id", "content_hash", "run_id"),
        )
        # The last value for a key wins, as if the rows were applied one by one.
        latest = {(r.dbsync, r.row_key): r for r in rows}
        params = [
            (r.dbsync, r.row_key, r.email, r.hub_id, r.content_hash, r.run_id)
            for _, r in sorted(latest.items())
        ]

        async def op(tx: Tx) -> None:
            for part in chunks(params, 1000):
                await tx.executemany(sql, part)

        await self._run(op, conflict_retry=True)

    async def dbsync_rows_not_seen(
        self, dbsync: str, run_id: int, *, after_key: str = "", limit: int = 1000
    ) -> list[DbsyncRow]:
        """Rows of this dbsync whose last run is older than `run_id` (gone from the source)."""

        async def op(tx: Tx) -> list[DbsyncRow]:
            rows = await tx.fetchall(
                f"SELECT {DBSYNC_COLS} FROM dbsync_rows WHERE dbsync = ? AND run_id < ?"
                " AND row_key > ? ORDER BY row_key LIMIT ?",
                (dbsync, run_id, after_key, max(limit, 0)),
            )
            return [self._dbsync_row(r) for r in rows]

        return await self._run(op, write=False)

    async def touch_dbsync_rows(self, dbsync: str, row_keys: Sequence[str], run_id: int) -> None:
        """Mark rows as seen by `run_id` without changing what was written."""
        keys = sorted(set(row_keys))

        async def op(tx: Tx) -> None:
            for part in chunks(keys):
                await tx.execute(
                    f"UPDATE dbsync_rows SET run_id = ? WHERE dbsync = ?"
                    f" AND row_key IN ({marks(len(part))})",
                    (run_id, dbsync, *part),
                )

        await self._run(op)

    async def delete_dbsync_rows(self, dbsync: str, row_keys: Sequence[str]) -> None:
        """Forget rows removed from the list."""
        keys = sorted(set(row_keys))

        async def op(tx: Tx) -> None:
            for part in chunks(keys):
                await tx.execute(
                    f"DELETE FROM dbsync_rows WHERE dbsync = ? AND row_key IN ({marks(len(part))})",
                    (dbsync, *part),
                )

        await self._run(op)

    async def count_dbsync_rows(self, dbsync: str) -> int:
        """How many source rows this dbsync has written."""

        async def op(tx: Tx) -> int:
            row = await self._fetchone(
                tx, "SELECT COUNT(*) FROM dbsync_rows WHERE dbsync = ?", (dbsync,)
            )
            return int(row[0]) if row is not None else 0

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

    async def release_job_lock(self, name: str, owner: str) -> None:
        """Release a named job lock held by `owner`."""

        async def op(tx: Tx) -> None:
            await tx.execute("DELETE FROM job_locks WHERE name = ? AND owner = ?", (name, owner))

        await self._run(op)

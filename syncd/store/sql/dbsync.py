"""The dbsync rows of the SQL store: what each dbsync last wrote per source row.

Kept apart from records.py so dbsync's store work stays in one small mixin of `SqlStore`.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Sequence
from typing import Any

from syncd.store.sql.dialect import IN_CHUNK, SqlBase, Tx, chunks, marks
from syncd.store.types import DbsyncRow

_ROW_COLS = "row_key, email, hub_id, content_hash, run_id, id"  # a DbsyncRow after `dbsync`
DBSYNC_COLS = f"dbsync, {_ROW_COLS}"
_AS_DBSYNC_ROW = functools.partial(tuple.__new__, DbsyncRow)
_ROW_KEY = operator.itemgetter(1)  # row_key in a dbsync_rows result row
_SQLITE_CHUNK = 2000  # keys per packed lookup (a dbsync's lookup slice: one step for all)


class DbsyncOps(SqlBase):
    """Read, record and forget the rows a dbsync wrote."""

    @staticmethod
    def _dbsync_row(r: Sequence[Any]) -> DbsyncRow:
        return DbsyncRow(r[0], r[1], r[2], r[3], r[4], int(r[5]), int(r[6]))

    async def dbsync_rows(self, dbsync: str, row_keys: Sequence[str]) -> dict[str, DbsyncRow]:
        """What the last runs wrote for these source rows."""

        async def op(tx: Tx) -> dict[str, DbsyncRow]:
            # Runs once per source row of every run: the result rows become DbsyncRows in C
            # (the name is selected as a bound constant, run_id is an integer column).
            out: dict[str, DbsyncRow] = {}
            sqlite = self.dialect.name == "sqlite"
            for part in chunks(list(row_keys), _SQLITE_CHUNK if sqlite else IN_CHUNK):
                where = f" FROM dbsync_rows WHERE dbsync = ? AND row_key IN ({marks(len(part))})"
                if sqlite:
                    # One result row per chunk: SQLite does all of the chunk's lookups inside
                    # one step, without the GIL. Row by row, every step gave the GIL back and
                    # waited to take it again from the busy event loop (up to the 5 ms
                    # switch interval each time).
                    packed = await tx.fetchall(
                        f"SELECT json_group_array(json_array(?, {_ROW_COLS})){where}",
                        (dbsync, dbsync, *part),
                    )
                    rows = json.loads(packed[0][0])
                else:
                    rows = await tx.fetchall(
                        f"SELECT ?, {_ROW_COLS}{where}", (dbsync, dbsync, *part)
                    )
                out.update(zip(map(_ROW_KEY, rows), map(_AS_DBSYNC_ROW, rows), strict=True))
            return out

        return await self._run(op, write=False)

    async def upsert_dbsync_rows(self, rows: Sequence[DbsyncRow]) -> None:
        """Record what a run wrote (batched)."""
        if not rows:
            return
        sql = self._upsert_dbsync_sql()
        params = self._upsert_dbsync_params(rows)

        async def op(tx: Tx) -> None:
            for part in chunks(params, 1000):
                await tx.executemany(sql, part)

        await self._run(op, conflict_retry=True)

    def _upsert_dbsync_sql(self) -> str:
        return self.dialect.upsert(
            "dbsync_rows",
            ("dbsync", "row_key", "email", "hub_id", "content_hash", "run_id"),
            ("dbsync", "row_key"),
            ("email", "hub_id", "content_hash", "run_id"),
        )

    @staticmethod
    def _upsert_dbsync_params(rows: Sequence[DbsyncRow]) -> list[tuple[Any, ...]]:
        # The last value for a key wins, as if the rows were applied one by one.
        latest = {(r.dbsync, r.row_key): r for r in rows}
        return [latest[k][:6] for k in sorted(latest)]  # (dbsync … run_id): all but the id

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

"""Runs in SQL: start, finish, list, and the rows or records a run could not sync."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from syncd.model import ErrorCategory, RunKind, RunTrigger
from syncd.store.sql.dialect import (
    SqlBase,
    Tx,
    dump_json,
    load_json,
    utcnow,
)
from syncd.store.types import (
    Run,
    RunFailure,
)

RUN_COLS = (
    "id, kind, run_trigger, name, status, started_at, finished_at, counts, error_message, owner"
)


class RunOps(SqlBase):
    """The RunStore protocol in SQL."""

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

    async def interrupt_run(self, run_id: int, *, error: str) -> bool:
        """End a run still marked running as interrupted; False if it ended meanwhile."""

        async def op(tx: Tx) -> bool:
            n = await tx.execute(
                "UPDATE runs SET status = 'interrupted', finished_at = ?, error_message = ?"
                " WHERE id = ? AND status = 'running'",
                (self.dialect.ts(utcnow()), error, run_id),
            )
            return n == 1

        return await self._run(op)

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

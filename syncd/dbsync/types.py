"""The seams and records of dbsync: the source it reads, the run report, the busy error."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from syncd.config import DbsyncSettings
from syncd.dbsync.rows import SourceColumn
from syncd.errors import SyncdError
from syncd.rules import Rule

ProgressFn = Callable[[int, int], None]


class DbsyncSource(Protocol):
    """A read-only table source (MySqlSource plus a fast key-ordered stream)."""

    async def columns(self, table: str) -> Sequence[SourceColumn]:
        """The table's columns; ConfigError when there is no such table."""

    async def count(self, table: str, rule: Rule | None = None) -> int:
        """How many rows match `rule`."""

    def stream_rows(
        self,
        table: str,
        columns: Sequence[str],
        rule: Rule | None,
        *,
        key_column: str,
        batch_size: int,
    ) -> AsyncIterator[list[Sequence[Any]]]:
        """Matching rows in key order, page by page: the values in `columns` order, then a
        fingerprint of the values (a string that changes whenever one of them changes)."""

    def snapshot(self) -> AbstractAsyncContextManager[None]:
        """One consistent read-only snapshot around count and stream."""

    async def close(self) -> None:
        """Close the connection."""


SourceFactory = Callable[[DbsyncSettings], DbsyncSource]


class DbsyncBusy(SyncdError):
    """A run of this dbsync is already going on (here or on another instance)."""

    def __init__(self, name: str, run_id: int | None) -> None:
        super().__init__(
            f"dbsync {name} is already running" + (f" (run {run_id})" if run_id else "")
        )
        self.name = name
        self.run_id = run_id


class RunCancelled(SyncdError):
    """The operator cancelled the run: it starts no more hub calls, lets those in flight
    land and records what the hub accepted, then ends `interrupted`; the next run sends
    the rest."""


@dataclass
class Tally:
    """Counts of one run (or test), as they grow."""

    total: int = 0
    rows_read: int = 0
    new: int = 0  # rows whose email this dbsync has not synced before (created or updated)
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped_existing: int = 0
    deleted: int = 0
    delete_refused: int = 0
    failed: int = 0
    duplicates: int = 0
    api_calls: int = 0
    write_calls: int = 0

    def as_dict(self) -> dict[str, int]:
        """Counts for the store and the API; ``skipped`` is unchanged plus skipped existing."""
        out = {f.name: int(getattr(self, f.name)) for f in fields(self)}
        out["skipped"] = self.unchanged + self.skipped_existing
        return out


@dataclass(frozen=True)
class FailureExample:
    """One failed row, as shown in a test answer."""

    key: str
    columns: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class DbsyncReport:
    """The outcome of a test or run: counts, first failure reasons and any note."""

    name: str
    run_id: int
    mode: str  # "test" | "run"
    status: str  # succeeded | failed
    counts: dict[str, int]
    first_failures: tuple[FailureExample, ...] = ()
    note: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "name": self.name,
            "run_id": self.run_id,
            "mode": self.mode,
            "status": self.status,
            "counts": dict(self.counts),
            "first_failures": [
                {"key": f.key, "columns": list(f.columns), "reason": f.reason}
                for f in self.first_failures
            ],
            "note": self.note,
            "error": self.error,
        }

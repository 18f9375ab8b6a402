"""SQL building blocks: the dialect, the transaction handle and the base every part shares.

All SQL of the state store lives behind `SqlStore` (see ``queue.py`` and ``records.py``);
the drivers (``sqlite.py``, ``mysql.py``) only open connections, run one function inside one
transaction and translate driver errors into `StoreError`. SQL is written with ``?``
placeholders; the dialect decides placeholders, locking clauses, upserts and how timestamps
are stored.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Protocol, TypeVar

from syncd.jsontext import compact_encoder
from syncd.store.sql.schema import DialectName

T = TypeVar("T")

IN_CHUNK = 500  # ids/keys per IN (...) list: far below every driver's parameter limit
_TS_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(dt: datetime) -> datetime:
    """Normalise a datetime to aware UTC (naive values are taken to be UTC already)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@dataclass(frozen=True)
class Dialect:
    """What differs between SQLite and MySQL: placeholders, locking, upserts, timestamps."""

    name: DialectName

    @property
    def for_update(self) -> str:
        """Row-locking suffix for a read that precedes a write in the same transaction."""
        # SQLite transactions that write start with BEGIN IMMEDIATE: already exclusive.
        return " FOR UPDATE" if self.name == "mysql" else ""

    @property
    def skip_locked(self) -> str:
        """Suffix letting concurrent claimers pass over each other's rows."""
        return " FOR UPDATE SKIP LOCKED" if self.name == "mysql" else ""

    def sql(self, text: str) -> str:
        """Translate ``?`` placeholders into the driver's style."""
        return _to_format_style(text) if self.name == "mysql" else text

    def ts(self, dt: datetime | None) -> Any:
        """A datetime as the driver stores it: UTC, microsecond precision."""
        if dt is None:
            return None
        if self.name == "mysql":
            return as_utc(dt).replace(tzinfo=None)
        return self.ts_text(dt)

    def ts_text(self, dt: datetime) -> str:
        """A timestamp as text that both drivers store in a timestamp column as `ts` would.

        For rows written in bulk: pymysql escapes a datetime several times slower than text.
        """
        utc = as_utc(dt)
        if utc.year < 1000:  # isoformat pads the year to four digits, strftime does not
            return utc.strftime(_TS_FORMAT)
        # The same text as _TS_FORMAT, several times faster than strftime.
        return utc.replace(tzinfo=None).isoformat(" ", "microseconds")

    def from_ts(self, value: Any) -> datetime | None:
        """A stored timestamp back as an aware UTC datetime."""
        if value is None:
            return None
        if isinstance(value, datetime):
            return as_utc(value)
        return _parse_ts(str(value))

    def upsert(
        self, table: str, columns: Sequence[str], keys: Sequence[str], update: Sequence[str]
    ) -> str:
        """INSERT … that updates `update` columns when a row with the same `keys` exists."""
        cols = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        head = f"INSERT INTO {table} ({cols}) VALUES ({marks})"
        if self.name == "mysql":
            sets = ", ".join(f"{c} = VALUES({c})" for c in update)
            return f"{head} ON DUPLICATE KEY UPDATE {sets}"
        sets = ", ".join(f"{c} = excluded.{c}" for c in update)
        return f"{head} ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sets}"


@lru_cache(maxsize=1024)
def _parse_ts(text: str) -> datetime:
    # fromisoformat is several times faster than strptime and reads the same text; the cache
    # serves the many rows of one batch that share a timestamp (datetimes are immutable).
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@lru_cache(maxsize=512)
def _to_format_style(text: str) -> str:
    # Store SQL never contains a literal '?' or '%': values always travel as parameters.
    return text.replace("?", "%s")


class Tx(Protocol):
    """One open transaction; every method runs one statement."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it matched."""

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run a statement once per parameter row (batched by the driver)."""

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query; all its rows."""

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an INSERT; the new row's id."""


def marks(n: int) -> str:
    """``?, ?, …`` for an IN list of `n` values."""
    return ", ".join("?" for _ in range(n))


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` items."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"cannot store a {type(value).__name__} as JSON")


# One encoder for every dump: stored payloads are encoded once per record.
_ENCODE = compact_encoder(ensure_ascii=False, default=_json_default)


def dump_json(value: Any) -> str:
    """JSON text for a payload-like value (compact, UTF-8 kept readable)."""
    return _ENCODE(value)


def load_json(text: Any, default: Any = None) -> Any:
    """Parse stored JSON text; `default` for NULL."""
    if text is None:
        return default
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8")
    return json.loads(text)


def like_pattern(text: str) -> str:
    """A lower-cased ``%text%`` pattern with LIKE wildcards escaped by ``!``."""
    escaped = text.lower().replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return f"%{escaped}%"


LIKE_ESCAPE = "ESCAPE '!'"


class SqlBase:
    """The part every store mixin relies on: the dialect and the transaction runner."""

    kind: str
    dialect: Dialect

    async def _run(
        self, fn: Callable[[Tx], Awaitable[T]], *, write: bool = True, conflict_retry: bool = False
    ) -> T:
        """Run `fn` in one transaction and commit; raise StoreError on any driver error.

        `conflict_retry` re-runs `fn` on a unique-key violation (a concurrent insert won the
        race; the re-run sees its row). Deadlocks and lock timeouts are always retried.
        """
        raise NotImplementedError

    async def _fetchone(
        self, tx: Tx, sql: str, params: Sequence[Any] = ()
    ) -> tuple[Any, ...] | None:
        rows = await tx.fetchall(sql, params)
        return rows[0] if rows else None

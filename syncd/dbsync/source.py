"""Read-only, streaming access to the MySQL/MariaDB tables that dbsync imports.

The session can never modify the source: it runs ``SET SESSION TRANSACTION READ ONLY`` on
connect, and `MySqlSource.snapshot` wraps a run in ``START TRANSACTION READ ONLY, WITH
CONSISTENT SNAPSHOT`` so a count and the stream that follows see the same rows. Table and
column names are checked against information_schema and backtick-quoted; rule values are
always bound parameters (see `syncd.dbsync.sql_rules`). Rows are read through an
unbuffered server-side cursor, so memory stays flat however big the table is.

One source holds one connection: its calls run one after another, and no other call may be
made while a `MySqlSource.stream` is being consumed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import aiomysql
import pymysql

from syncd.config import MysqlDsn
from syncd.dbsync.sql_rules import compile_where, quote_ident
from syncd.errors import ConfigError, IntegrationError, TransientError
from syncd.rules import Rule

T = TypeVar("T")

# Server error codes that mean "the configuration does not fit the server".
_CONFIG_CODES = frozenset(
    {
        1044,  # access denied to the database
        1045,  # access denied (bad user or password)
        1049,  # unknown database
        1054,  # unknown column
        1142,  # command denied on a table
        1143,  # command denied on a column
        1146,  # no such table
        1227,  # missing privilege
        1698,  # access denied (auth plugin)
        1792,  # a write was attempted in the read-only session
    }
)
_SYNTAX_ERROR = 1064
_TABLE_TYPES = ("BASE TABLE", "VIEW", "SYSTEM VERSIONED")


@dataclass(frozen=True)
class ColumnInfo:
    """One column of a source table, from information_schema."""

    name: str
    type: str
    nullable: bool
    max_length: int | None
    is_primary: bool


class MySqlSource:
    """A read-only view of one MySQL/MariaDB database (the ``dbsync`` source)."""

    group_concat_max_len = 64 * 1024 * 1024

    def __init__(
        self,
        dsn: MysqlDsn,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 300.0,
        net_write_timeout: int = 3600,
    ) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        # While the caller works on a batch, the server waits to send the next rows; give it
        # far longer than the 60 s default before it drops a slow stream.
        self._net_write_timeout = net_write_timeout
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._streaming = False
        self._in_snapshot = False

    @property
    def where(self) -> str:
        """``user@host:port/database``: names the source in logs and errors (no password)."""
        d = self._dsn
        return f"{d.user}@{d.host}:{d.port}/{d.database}"

    async def __aenter__(self) -> MySqlSource:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the read-only session (no-op when already open)."""
        async with self._lock:
            await self._ensure_conn()

    async def close(self) -> None:
        """Close the session; safe to call more than once."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await asyncio.wait_for(conn.ensure_closed(), timeout=self._connect_timeout)
        except (OSError, TimeoutError, pymysql.err.MySQLError):
            conn.close()

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[None]:
        """Run the enclosed calls in one read-only transaction with a consistent snapshot.

        If the connection is lost (or a stream abandoned) inside, later calls in the block
        raise TransientError instead of silently reading outside the snapshot.
        """
        if self._in_snapshot:
            raise RuntimeError("MySqlSource.snapshot() does not nest")
        self._check_idle()
        async with self._lock:
            conn = await self._ensure_conn()
            await self._exec(conn, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            try:
                await self._exec(conn, "START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT")
            except ConfigError:
                # Servers without READ ONLY transactions: the session itself stays read-only.
                await self._exec(conn, "START TRANSACTION WITH CONSISTENT SNAPSHOT")
            self._in_snapshot = True
        try:
            yield
        finally:
            self._in_snapshot = False
            if self._streaming:
                # An unfinished stream still owns the connection: end both together.
                self._drop()
            elif self._conn is not None:
                async with self._lock:
                    try:
                        await self._exec(self._conn, "ROLLBACK")
                    except IntegrationError:
                        self._drop()

    async def list_tables(self) -> list[str]:
        """Names of the tables and views in the DSN's database."""
        rows = await self._query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = %s AND table_type IN (%s, %s, %s) ORDER BY table_name",
            [self._dsn.database, *_TABLE_TYPES],
        )
        return [str(r[0]) for r in rows]

    async def columns(self, table: str) -> list[ColumnInfo]:
        """The columns of `table` in definition order; ConfigError if there is no such table."""
        return await self._columns_of(await self._resolve_table(table))

    async def primary_key(self, table: str) -> list[str]:
        """The primary-key columns of `table` in key order (empty when it has none)."""
        return await self._primary_key(await self._resolve_table(table))

    async def count(self, table: str, rule: Rule | None = None) -> int:
        """How many rows of `table` match `rule`."""
        real, cols = await self._table_columns(table)
        where, params = compile_where(rule, {c.name: c.type for c in cols})
        rows = await self._query(f"SELECT COUNT(*) FROM {quote_ident(real)} WHERE {where}", params)
        return int(rows[0][0])

    async def stream(
        self,
        table: str,
        columns: Sequence[str],
        rule: Rule | None = None,
        *,
        batch_size: int = 1000,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield matching rows in batches of dicts keyed by `columns` as the caller spelled them.

        Rows come in no particular order. Leaving the loop early closes the connection (and
        with it any snapshot) instead of reading the rest of the result.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not columns:
            raise ConfigError(f"mysql {self.where}: no columns requested from {table!r}")
        real, cols = await self._table_columns(table)
        by_lower = {c.name.lower(): c.name for c in cols}
        missing = [c for c in columns if c.lower() not in by_lower]
        if missing:
            raise ConfigError(
                f"mysql {self.where}: unknown column(s) {', '.join(map(repr, missing))} in "
                f"table {real!r}; it has: {', '.join(c.name for c in cols)}"
            )
        where, params = compile_where(rule, {c.name: c.type for c in cols})
        select = ", ".join(quote_ident(by_lower[c.lower()]) for c in columns)
        sql = f"SELECT {select} FROM {quote_ident(real)} WHERE {where}"
        keys = list(columns)
        self._check_idle()
        async with self._lock:
            conn = await self._ensure_conn()
            self._streaming = True
            finished = False
            try:
                cur = await conn.cursor(aiomysql.SSCursor)
                await self._guard(cur.execute(sql, params))
                while True:
                    rows = await self._guard(cur.fetchmany(batch_size))
                    if not rows:
                        break
                    yield [dict(zip(keys, row, strict=True)) for row in rows]
                await self._guard(cur.close())
                finished = True
            finally:
                self._streaming = False
                if not finished:
                    # Draining the rest of an abandoned result could mean reading millions of
                    # rows; dropping the connection is cheaper and always safe.
                    self._drop()

    # -- internals --------------------------------------------------------------------------

    def _check_idle(self) -> None:
        if self._streaming:
            raise RuntimeError("MySqlSource: another call was made while a stream is open")

    async def _ensure_conn(self) -> Any:
        if self._conn is not None:
            return self._conn
        if self._in_snapshot:
            raise TransientError(
                f"mysql {self.where}: the snapshot ended early (connection lost or a stream "
                "was abandoned); start the run again"
            )
        d = self._dsn
        try:
            conn = await asyncio.wait_for(
                aiomysql.connect(
                    host=d.host,
                    port=d.port,
                    user=d.user,
                    password=d.password,
                    db=d.database,
                    charset="utf8mb4",
                    autocommit=True,
                    connect_timeout=self._connect_timeout,
                ),
                timeout=self._connect_timeout + 1,
            )
        except BaseException as exc:
            raise self._wrap(exc, "connecting") from None
        self._conn = conn
        try:
            await self._exec(conn, "SET SESSION TRANSACTION READ ONLY")
            await self._exec(
                conn, "SET SESSION net_write_timeout = %s", [int(self._net_write_timeout)]
            )
        except BaseException:
            self._drop()
            raise
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _guard(self, aw: Awaitable[T]) -> T:
        """Await a driver call with the read timeout, translating its errors."""
        try:
            return await asyncio.wait_for(aw, timeout=self._read_timeout)
        except BaseException as exc:
            err = self._wrap(exc, "reading")
            if not isinstance(err, ConfigError):
                # Cancelled or failed mid-protocol: the session state is unknown.
                self._drop()
            if err is exc:
                raise
            raise err from None

    async def _exec(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> None:
        async with conn.cursor() as cur:
            await self._guard(cur.execute(sql, list(params)))

    async def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        self._check_idle()
        async with self._lock:
            conn = await self._ensure_conn()
            cur = await conn.cursor()
            try:
                await self._guard(cur.execute(sql, list(params)))
                rows = await self._guard(cur.fetchall())
            finally:
                await cur.close()
            return [tuple(r) for r in rows]

    async def _resolve_table(self, table: str) -> str:
        tables = await self.list_tables()
        if table in tables:
            return table
        folded = [t for t in tables if t.lower() == table.lower()]
        if len(folded) == 1:
            return folded[0]
        shown = ", ".join(tables[:30]) + (" …" if len(tables) > 30 else "")
        raise ConfigError(
            f"mysql {self.where}: no table {table!r} in database {self._dsn.database!r}; "
            f"it has: {shown or '(no tables)'}"
        )

    async def _primary_key(self, real: str) -> list[str]:
        rows = await self._query(
            "SELECT column_name FROM information_schema.statistics "
            "WHERE table_schema = %s AND table_name = %s AND index_name = 'PRIMARY' "
            "ORDER BY seq_in_index",
            [self._dsn.database, real],
        )
        return [str(r[0]) for r in rows]

    async def _columns_of(self, real: str) -> list[ColumnInfo]:
        pk = set(await self._primary_key(real))
        rows = await self._query(
            "SELECT column_name, data_type, is_nullable, character_maximum_length "
            "FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
            "ORDER BY ordinal_position",
            [self._dsn.database, real],
        )
        return [
            ColumnInfo(
                name=str(name),
                type=str(dtype).lower(),
                nullable=str(nullable).upper() == "YES",
                max_length=None if maxlen is None else int(maxlen),
                is_primary=str(name) in pk,
            )
            for name, dtype, nullable, maxlen in rows
        ]

    async def _table_columns(self, table: str) -> tuple[str, list[ColumnInfo]]:
        real = await self._resolve_table(table)
        return real, await self._columns_of(real)

    def _wrap(self, exc: BaseException, doing: str) -> BaseException:
        """Translate a driver failure into ConfigError/TransientError; others pass through."""
        if isinstance(exc, IntegrationError):
            return exc
        if isinstance(exc, TimeoutError):
            limit = self._connect_timeout if doing == "connecting" else self._read_timeout
            return TransientError(f"mysql {self.where}: timed out {doing} (after {limit:g} s)")
        if isinstance(exc, pymysql.err.MySQLError):
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
            detail = self._redact(str(exc.args[1]) if len(exc.args) > 1 else "")
            msg = f"mysql {self.where}: error {doing}: ({code}) {detail}".rstrip()
            if code in _CONFIG_CODES or code == _SYNTAX_ERROR:
                return ConfigError(msg)
            if isinstance(exc, pymysql.err.ProgrammingError | pymysql.err.DataError):
                return ConfigError(msg)
            return TransientError(msg)
        if isinstance(exc, OSError | ConnectionError | EOFError):
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc)
            name = reason if isinstance(reason, str) else reason.__name__
            return TransientError(f"mysql {self.where}: connection failed {doing}: {name}")
        return exc

    def _redact(self, text: str) -> str:
        pw = self._dsn.password
        if not pw:
            return text
        if len(pw) < 4:
            # Replacing a very short password would mangle the text and still hint at it.
            return "(driver message withheld)" if pw in text else text
        return text.replace(pw, "***")

    # -- streaming in key order (dbsync) ------------------------------------------------
    # When the key column is the table's primary key, every page is one keyset query
    # (``key > last ORDER BY key LIMIT n``) whose rows the server packs into one
    # ``JSON_ARRAYAGG`` value: decoding that in C is several times faster than the driver's
    # row-by-row protocol parsing, and memory stays one page. Other keys fall back to an
    # unbuffered ``ORDER BY key`` stream.

    async def stream_rows(
        self,
        table: str,
        columns: Sequence[str],
        rule: Rule | None,
        *,
        key_column: str,
        batch_size: int,
    ) -> AsyncIterator[list[Sequence[Any]]]:
        """Matching rows in key order, in pages of at most `batch_size`; each row's values
        are followed by a fingerprint of them (hex), equal for equal values."""
        real, cols = await self._table_columns(table)
        by_lower = {c.name.lower(): c.name for c in cols}
        missing = [c for c in (*columns, key_column) if c.lower() not in by_lower]
        if missing:
            raise ConfigError(f"mysql {self.where}: unknown column {missing[0]!r} in {real!r}")
        where, params = compile_where(rule, {c.name: c.type for c in cols})
        names = [by_lower[c.lower()] for c in columns]
        key = by_lower[key_column.lower()]
        if await self._primary_key(real) != [key] or key not in names:
            async for chunk in self._ordered(real, names, key, where, params, batch_size):
                yield chunk
            return
        await self._query("SET SESSION group_concat_max_len = %s", [self.group_concat_max_len])
        select = ", ".join(quote_ident(n) for n in names)
        k = quote_ident(key)
        # The server also hashes each row's values (on its own core): an unchanged row is
        # then recognised without Python hashing its values again.
        packed = f"JSON_ARRAYAGG(JSON_ARRAY({select}, MD5(JSON_ARRAY({select}))) ORDER BY {k})"
        after: Any = None
        size = max(batch_size, 1)
        while True:
            cond = f"({where})" if after is None else f"({where}) AND {k} > %s"
            args = list(params) if after is None else [*params, after]
            sql = (
                f"SELECT MAX({k}), COUNT(*), {packed} FROM (SELECT {select} "
                f"FROM {quote_ident(real)} WHERE {cond} ORDER BY {k} LIMIT {int(size)}) AS page"
            )
            last, count, blob = (await self._query(sql, args))[0]
            if not count:
                return
            rows: list[Sequence[Any]] | None
            try:
                rows = json.loads(blob, parse_float=str)
            except (TypeError, ValueError):
                rows = None
            if rows is None or len(rows) != count:
                # The page outgrew group_concat_max_len (huge values): take smaller pages.
                if size == 1:
                    raise ConfigError(
                        f"mysql {self.where}: a row of {real!r} is larger than "
                        f"{self.group_concat_max_len} bytes"
                    )
                size = max(size // 8, 1)
                continue
            yield rows
            after = last
            size = max(batch_size, 1)

    async def _ordered(
        self,
        real: str,
        names: Sequence[str],
        key: str,
        where: str,
        params: Sequence[Any],
        batch_size: int,
    ) -> AsyncIterator[list[Sequence[Any]]]:
        select = ", ".join(quote_ident(n) for n in names)
        sql = f"SELECT {select} FROM {quote_ident(real)} WHERE {where} ORDER BY {quote_ident(key)}"
        self._check_idle()
        async with self._lock:
            conn = await self._ensure_conn()
            self._streaming = True
            finished = False
            try:
                cur = await conn.cursor(aiomysql.SSCursor)
                await self._guard(cur.execute(sql, list(params)))
                while True:
                    rows = await self._guard(cur.fetchmany(batch_size))
                    if not rows:
                        break
                    yield [(*r, _fingerprint(r)) for r in rows]
                await self._guard(cur.close())
                finished = True
            finally:
                self._streaming = False
                if not finished:
                    self._drop()


def _fingerprint(row: Sequence[Any]) -> str:
    """A row's fingerprint where the server did not make one (the key-ordered cursor path)."""
    return hashlib.md5(
        repr(row).encode("utf-8", "surrogatepass"), usedforsecurity=False
    ).hexdigest()

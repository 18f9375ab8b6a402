"""MySqlSource against the real MariaDB: metadata, counting, streaming with flat memory,
read-only sessions and snapshots, and error translation without secrets."""

from __future__ import annotations

import socket
import tracemalloc
from typing import Any

import aiomysql
import pymysql
import pytest

from syncd.config import MysqlDsn
from syncd.dbsync.source import ColumnInfo, MySqlSource
from syncd.dbsync.sql_rules import RuleColumnError
from syncd.errors import ConfigError, TransientError
from syncd.rules import Condition, Group, Op

ER_READ_ONLY_TRANSACTION = 1792


async def admin(dsn: str) -> Any:
    d = MysqlDsn.parse(dsn)
    return await aiomysql.connect(
        host=d.host,
        port=d.port,
        user=d.user,
        password=d.password,
        db=d.database,
        charset="utf8mb4",
        autocommit=True,
    )


async def run(conn: Any, sql: str, params: Any = None) -> list[Any]:
    async with conn.cursor() as cur:
        await cur.execute(sql, params)
        return list(await cur.fetchall())


@pytest.fixture
async def db(mysql_database: str) -> Any:
    conn = await admin(mysql_database)
    await run(
        conn,
        "CREATE TABLE people (id INT NOT NULL PRIMARY KEY, email VARCHAR(190) NOT NULL,"
        " name VARCHAR(80) NULL, score DECIMAL(6,2) NULL) ENGINE=InnoDB",
    )
    await run(
        conn,
        "CREATE TABLE pairs (a INT NOT NULL, b VARCHAR(10) NOT NULL, note TEXT,"
        " PRIMARY KEY (b, a)) ENGINE=InnoDB",
    )
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO people VALUES (%s, %s, %s, %s)",
            [
                (1, "a@x.com", "Ann", 1.5),
                (2, "b@y.com", None, None),
                (3, "c@x.com", "Cid", 7),
                (4, "d@z.org", "Dee", 3),
            ],
        )
    try:
        yield mysql_database, conn
    finally:
        conn.close()


async def test_metadata(db: Any) -> None:
    dsn, _ = db
    async with MySqlSource(MysqlDsn.parse(dsn)) as src:
        assert await src.list_tables() == ["pairs", "people"]
        cols = await src.columns("people")
        assert cols == [
            ColumnInfo("id", "int", False, None, True),
            ColumnInfo("email", "varchar", False, 190, False),
            ColumnInfo("name", "varchar", True, 80, False),
            ColumnInfo("score", "decimal", True, None, False),
        ]
        assert await src.primary_key("people") == ["id"]
        assert await src.primary_key("PAIRS") == ["b", "a"]
        with pytest.raises(ConfigError, match=r"no table 'nope'.*it has: pairs, people"):
            await src.columns("nope")
        with pytest.raises(ConfigError, match="no table"):
            await src.count("people`; DROP TABLE people; --")
        assert await src.count("people") == 4


async def test_count_and_stream_with_rules(db: Any) -> None:
    dsn, _ = db
    rule = Group(
        "any",
        (Condition("EMAIL", Op.ENDS_WITH, "@x.com"), Condition("score", Op.IS_NULL)),
    )
    async with MySqlSource(MysqlDsn.parse(dsn)) as src:
        assert await src.count("people", rule) == 3
        batches = [
            b async for b in src.stream("people", ["ID", "Email", "name"], rule, batch_size=2)
        ]
        assert [len(b) for b in batches] == [2, 1]
        rows = sorted((r for b in batches for r in b), key=lambda r: r["ID"])
        assert rows == [
            {"ID": 1, "Email": "a@x.com", "name": "Ann"},
            {"ID": 2, "Email": "b@y.com", "name": None},
            {"ID": 3, "Email": "c@x.com", "name": "Cid"},
        ]
        # `!=` is NULL-safe: the row without a name matches.
        ne = Condition("name", Op.NE, "Ann")
        assert await src.count("people", ne) == 3
        with pytest.raises(RuleColumnError, match="unknown column 'nope'"):
            await src.count("people", Condition("nope", Op.EQ, 1))
        with pytest.raises(ConfigError, match=r"unknown column\(s\) 'phone'.*id, email, name"):
            async for _ in src.stream("people", ["email", "phone"]):
                pass
        # The source still works after the errors.
        assert await src.count("people", Condition("id", Op.IN, (1, 4))) == 2


async def test_streams_100k_rows_once_with_flat_memory(mysql_database: str) -> None:
    conn = await admin(mysql_database)
    try:
        await run(
            conn,
            "CREATE TABLE big (id INT NOT NULL PRIMARY KEY, email VARCHAR(64) NOT NULL,"
            " pad VARCHAR(200) NOT NULL) ENGINE=InnoDB",
        )
        await run(
            conn,
            "INSERT INTO big SELECT seq, CONCAT('user', seq, '@example.com'),"
            " REPEAT('p', 150) FROM seq_1_to_100000",
        )
        payload = int((await run(conn, "SELECT SUM(LENGTH(email) + LENGTH(pad)) FROM big"))[0][0])
    finally:
        conn.close()

    seen = bytearray(100_001)
    sizes: list[int] = []
    async with MySqlSource(MysqlDsn.parse(mysql_database)) as src, src.snapshot():
        total = await src.count("big")
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            async for batch in src.stream("big", ["id", "email", "pad"], batch_size=500):
                sizes.append(len(batch))
                for row in batch:
                    seen[row["id"]] += 1
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert total == 100_000 == sum(sizes)
    assert max(sizes) == 500 and len(sizes) == 200
    assert seen[0] == 0 and all(n == 1 for n in seen[1:])
    # Buffering the result would hold at least the raw payload (~16 MB, several times that as
    # Python objects); streaming stays around one batch.
    assert payload > 15_000_000
    assert peak < payload / 10, (peak, payload)


async def test_session_is_read_only(db: Any) -> None:
    dsn, conn = db
    before = (await run(conn, "CHECKSUM TABLE people"))[0][1]
    src = MySqlSource(MysqlDsn.parse(dsn))
    await src.connect()
    try:
        session = src._conn
        for sql in (
            "INSERT INTO people VALUES (9, 'evil@x.com', 'Eve', 0)",
            "UPDATE people SET name = 'pwned'",
            "DELETE FROM people",
        ):
            with pytest.raises(pymysql.err.MySQLError) as info:
                await run(session, sql)
            assert info.value.args[0] == ER_READ_ONLY_TRANSACTION
        async with src.snapshot():
            with pytest.raises(pymysql.err.MySQLError) as info:
                await run(src._conn, "UPDATE people SET name = 'pwned' WHERE id = 1")
            assert info.value.args[0] == ER_READ_ONLY_TRANSACTION
            assert await src.count("people") == 4
    finally:
        await src.close()
        await src.close()
    assert (await run(conn, "CHECKSUM TABLE people"))[0][1] == before


async def test_hostile_rule_values_through_the_source(db: Any) -> None:
    dsn, conn = db
    evil = "'; DROP TABLE people; --"
    await run(conn, "INSERT INTO people VALUES (%s, %s, %s, NULL)", (7, "e@😀.com", evil))
    before = (await run(conn, "CHECKSUM TABLE people"))[0][1]
    async with MySqlSource(MysqlDsn.parse(dsn)) as src:
        for rule, want in (
            (Condition("name", Op.EQ, evil), [7]),
            (Condition("name", Op.CONTAINS, "; DROP"), [7]),
            (Condition("email", Op.CONTAINS, "😀"), [7]),
            (Condition("email", Op.STARTS_WITH, "%"), []),
            (Condition("name", Op.IN, (evil, "x" * 10_000)), [7]),
        ):
            assert await src.count("people", rule) == len(want)
            got = [r["id"] async for b in src.stream("people", ["id"], rule) for r in b]
            assert got == want
    assert (await run(conn, "CHECKSUM TABLE people"))[0][1] == before
    assert (await run(conn, "SELECT COUNT(*) FROM people"))[0][0] == 5


async def test_snapshot_is_consistent(db: Any) -> None:
    dsn, conn = db
    async with MySqlSource(MysqlDsn.parse(dsn)) as src:
        async with src.snapshot():
            assert await src.count("people") == 4
            await run(conn, "INSERT INTO people VALUES (5, 'e@x.com', 'Eli', 2)")
            assert await src.count("people") == 4
            rows = [r async for b in src.stream("people", ["id"]) for r in b]
            assert sorted(r["id"] for r in rows) == [1, 2, 3, 4]
        assert await src.count("people") == 5


async def test_abandoned_stream(db: Any) -> None:
    dsn, _ = db
    async with MySqlSource(MysqlDsn.parse(dsn)) as src:
        stream = src.stream("people", ["id"], batch_size=1)
        first = await anext(stream)
        assert len(first) == 1
        with pytest.raises(RuntimeError, match="stream is open"):
            await src.count("people")
        await stream.aclose()
        # Outside a snapshot the source reconnects by itself.
        assert await src.count("people") == 4
        async with src.snapshot():
            stream = src.stream("people", ["id"], batch_size=1)
            await anext(stream)
            await stream.aclose()
            with pytest.raises(TransientError, match="snapshot ended early"):
                await src.count("people")
        assert await src.count("people") == 4


async def test_bad_credentials_are_config_errors_without_the_password(db: Any) -> None:
    dsn, _ = db
    good = MysqlDsn.parse(dsn)
    secret = "s3cr3t-Pa55w0rd"
    for user in (good.user, "no_such_user"):
        bad = MysqlDsn(good.host, good.port, user, secret, good.database)
        src = MySqlSource(bad)
        with pytest.raises(ConfigError) as info:
            await src.connect()
        msg = str(info.value)
        assert secret not in msg and "Access denied" in msg and user in msg
        assert secret not in repr(info.value.__cause__) and info.value.__suppress_context__
        await src.close()
    missing_db = MysqlDsn(good.host, good.port, good.user, good.password, "syncd_no_such_db")
    with pytest.raises(ConfigError, match="Unknown database"):
        await MySqlSource(missing_db).connect()


async def test_unreachable_server_is_transient(db: Any) -> None:
    dsn, _ = db
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = MysqlDsn.parse(dsn)
    src = MySqlSource(MysqlDsn("127.0.0.1", port, d.user, "pw-never-shown", d.database))
    with pytest.raises(TransientError) as info:
        await src.list_tables()
    assert "pw-never-shown" not in str(info.value)
    assert str(port) in str(info.value)

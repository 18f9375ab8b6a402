"""Rule → SQL compiler: exact SQL text per operator, nesting, errors, and hostile values run
against the real MariaDB (bound, matching exactly the intended rows, table unchanged)."""

from __future__ import annotations

from typing import Any

import aiomysql
import pytest

from syncd.config import MysqlDsn
from syncd.dbsync.sql_rules import (
    RuleColumnError,
    RuleOperatorError,
    compile_where,
    escape_like,
    quote_ident,
)
from syncd.errors import ConfigError
from syncd.rules import Condition, Group, Op, RuleError, parse_rule

COLS = {"id": "int", "email": "varchar", "Name": "text", "score": "decimal", "pct%": "int"}


def c(field: str, op: str, value: Any = None) -> Condition:
    return Condition(field, Op(op), value)


@pytest.mark.parametrize(
    ("rule", "sql", "params"),
    [
        (c("ID", "=", 1), "`id` = %s", [1]),
        (c("id", ">", 1), "`id` > %s", [1]),
        (c("id", ">=", 2), "`id` >= %s", [2]),
        (c("id", "<", 3), "`id` < %s", [3]),
        (c("id", "<=", 4.5), "`id` <= %s", [4.5]),
        (c("email", "!=", "a@x"), "NOT (`email` <=> %s)", ["a@x"]),
        (c("email", "contains", "50%_a\\b!"), "`email` LIKE %s ESCAPE '!'", ["%50!%!_a\\b!!%"]),
        (c("email", "starts_with", "ab"), "`email` LIKE %s ESCAPE '!'", ["ab%"]),
        (c("email", "ends_with", "@x.com"), "`email` LIKE %s ESCAPE '!'", ["%@x.com"]),
        (c("name", "is_null"), "`Name` IS NULL", []),
        (c("name", "is_not_null"), "`Name` IS NOT NULL", []),
        (c("id", "in", (1, 2, 3)), "`id` IN (%s, %s, %s)", [1, 2, 3]),
        (c("pct%", "=", 5), "`pct%%` = %s", [5]),
        (c("id", "=", True), "`id` = %s", [1]),
        # Numbers against a text column are bound as strings (no numeric coercion of text).
        (c("email", "=", 0), "`email` = %s", ["0"]),
        (c("email", "in", (1, "b")), "`email` IN (%s, %s)", ["1", "b"]),
    ],
)
def test_every_operator(rule: Condition, sql: str, params: list[Any]) -> None:
    assert compile_where(rule, COLS) == (sql, params)


def test_no_rule_is_true() -> None:
    assert compile_where(None, COLS) == ("TRUE", [])


def test_groups_are_parenthesised_and_params_in_order() -> None:
    rule = parse_rule(
        {
            "all": [
                {"field": "id", "op": ">", "value": 10},
                {
                    "any": [
                        {"field": "email", "op": "ends_with", "value": "@a.com"},
                        {
                            "all": [
                                {"field": "name", "op": "is_null"},
                                {"column": "score", "op": "<", "value": 3},
                            ]
                        },
                    ]
                },
                {"field": "id", "op": "in", "value": [1, 2]},
            ]
        }
    )
    sql, params = compile_where(rule, COLS)
    assert sql == (
        "(`id` > %s AND (`email` LIKE %s ESCAPE '!' OR (`Name` IS NULL AND `score` < %s))"
        " AND `id` IN (%s, %s))"
    )
    assert params == [10, "%@a.com", 3, 1, 2]
    assert compile_where(Group("all", ()), COLS)[0] == "TRUE"
    assert compile_where(Group("any", ()), COLS)[0] == "FALSE"


def test_unknown_column_names_it_and_lists_the_table() -> None:
    with pytest.raises(RuleColumnError) as info:
        compile_where(Group("any", (c("id", "=", 1), c("foo", "=", 1))), COLS)
    msg = str(info.value)
    assert "unknown column 'foo'" in msg and "id, email, Name, score, pct%" in msg
    assert isinstance(info.value, ConfigError) and isinstance(info.value, RuleError)


def test_unknown_operator_and_bad_values() -> None:
    with pytest.raises(RuleOperatorError, match="unknown operator 'like'"):
        compile_where(Condition("id", "like", 1), COLS)  # type: ignore[arg-type]
    with pytest.raises(RuleError, match="unknown operator"):
        parse_rule({"field": "id", "op": "; DROP", "value": 1})
    with pytest.raises(RuleOperatorError, match="is_null"):
        compile_where(c("id", "=", None), COLS)
    with pytest.raises(RuleOperatorError, match="non-empty"):
        compile_where(c("id", "in", ()), COLS)
    with pytest.raises(RuleOperatorError, match="NULL"):
        compile_where(c("id", "in", (1, None)), COLS)
    with pytest.raises(RuleOperatorError, match="needs a string"):
        compile_where(c("id", "contains", 5), COLS)
    with pytest.raises(RuleOperatorError, match="object"):
        compile_where(c("id", "=", object()), COLS)  # type: ignore[arg-type]


def test_helpers() -> None:
    assert quote_ident("a`b%c") == "`a``b%%c`"
    assert escape_like("!%_\\") == "!!!%!_\\"


HOSTILE = [
    "'; DROP TABLE t; --",
    "back\\slash",
    "trailing\\",
    "50% off",
    "5000 off",
    "under_score",
    "underXscore",
    'O\'Brien "quoted"',
    "bang!%",
    "emoji 😀 🎉",
    "x" * 10_000,
]


async def _setup(dsn: str) -> Any:
    d = MysqlDsn.parse(dsn)
    conn = await aiomysql.connect(
        host=d.host,
        port=d.port,
        user=d.user,
        password=d.password,
        db=d.database,
        charset="utf8mb4",
        autocommit=True,
    )
    async with conn.cursor() as cur:
        await cur.execute(
            "CREATE TABLE t (id INT PRIMARY KEY, name TEXT NULL, `we``ird%` VARCHAR(50) NULL)"
            " ENGINE=InnoDB"
        )
        rows = [(i + 1, v, "w" if i % 2 else None) for i, v in enumerate(HOSTILE)]
        rows.append((100, None, None))
        await cur.executemany("INSERT INTO t (id, name, `we``ird%%`) VALUES (%s, %s, %s)", rows)
    return conn


async def _ids(conn: Any, rule: Any) -> set[int]:
    sql, params = compile_where(rule, {"id": "int", "name": "text", "we`ird%": "varchar"})
    # No value in the text: the only quoted literal is the ESCAPE character.
    assert "'" not in sql.replace("ESCAPE '!'", "")
    for p in params:
        assert not (isinstance(p, str) and len(p.strip("%")) > 2 and p.strip("%") in sql)
    async with conn.cursor() as cur:
        await cur.execute(f"SELECT id FROM t WHERE {sql}", params)
        return {r[0] for r in await cur.fetchall()}


async def _checksum(conn: Any) -> Any:
    async with conn.cursor() as cur:
        await cur.execute("CHECKSUM TABLE t")
        return (await cur.fetchone())[1]


def ids_of(*values: str) -> set[int]:
    return {HOSTILE.index(v) + 1 for v in values}


async def test_hostile_values_are_bound_and_match_exactly(mysql_database: str) -> None:
    conn = await _setup(mysql_database)
    try:
        before = await _checksum(conn)
        for v in HOSTILE:
            assert await _ids(conn, c("name", "=", v)) == ids_of(v)
        assert await _ids(conn, c("name", "contains", "%")) == ids_of("50% off", "bang!%")
        assert await _ids(conn, c("name", "contains", "_")) == ids_of("under_score")
        assert await _ids(conn, c("name", "contains", "\\")) == ids_of("back\\slash", "trailing\\")
        assert await _ids(conn, c("name", "ends_with", "\\")) == ids_of("trailing\\")
        assert await _ids(conn, c("name", "contains", "!%")) == ids_of("bang!%")
        assert await _ids(conn, c("name", "starts_with", "'; DROP")) == ids_of(HOSTILE[0])
        assert await _ids(conn, c("name", "contains", "'")) == ids_of(HOSTILE[0], HOSTILE[7])
        assert await _ids(conn, c("name", "contains", '"quoted"')) == ids_of(HOSTILE[7])
        assert await _ids(conn, c("name", "contains", "🎉")) == ids_of("emoji 😀 🎉")
        assert await _ids(conn, c("name", "starts_with", "x" * 5000)) == ids_of("x" * 10_000)
        assert await _ids(conn, c("name", "in", (HOSTILE[0], "x" * 10_000, "nope"))) == ids_of(
            HOSTILE[0], "x" * 10_000
        )
        # NULL handling: `=`/contains never match NULL; `!=` is NULL-safe and does.
        everything = set(range(1, len(HOSTILE) + 1)) | {100}
        assert await _ids(conn, c("name", "is_null")) == {100}
        assert await _ids(conn, c("name", "is_not_null")) == everything - {100}
        assert await _ids(conn, c("name", "!=", HOSTILE[0])) == everything - ids_of(HOSTILE[0])
        assert await _ids(conn, c("name", "contains", "")) == everything - {100}
        # An identifier with a backtick and a percent sign is quoted, not spliced.
        odd = {i for i in range(1, len(HOSTILE) + 1) if (i - 1) % 2}
        assert await _ids(conn, c("WE`IRD%", "=", "w")) == odd
        assert await _ids(conn, Group("any", (c("id", "<", 2), c("id", ">", 99)))) == {1, 100}
        assert await _ids(conn, Group("all", (c("id", ">=", 2), c("id", "<=", 3)))) == {2, 3}
        assert await _checksum(conn) == before
        async with conn.cursor() as cur:
            await cur.execute("SELECT COUNT(*) FROM t")
            assert (await cur.fetchone())[0] == len(HOSTILE) + 1
    finally:
        conn.close()

"""Shared fixtures: a private MariaDB database per test, and MySQL availability rules."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

import tests.timing  # noqa: F401  (sets the simulators' time factor before any is built)

MYSQL_DSN = os.environ.get("SYNCD_TEST_MYSQL_DSN", "mysql://root@127.0.0.1:3306/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _dsn_parts() -> dict[str, object]:
    from syncd.config import MysqlDsn

    d = MysqlDsn.parse(MYSQL_DSN)
    return {"host": d.host, "port": d.port, "user": d.user, "password": d.password}


async def _admin_connect():  # type: ignore[no-untyped-def]
    import aiomysql

    try:
        return await aiomysql.connect(**_dsn_parts(), autocommit=True)
    except Exception as exc:
        if IN_CI:
            raise RuntimeError(f"MariaDB is required under CI=true: {exc}") from exc
        pytest.skip(f"MariaDB not reachable ({exc}); it is required under CI=true")


@pytest.fixture
async def mysql_database() -> AsyncIterator[str]:
    """A fresh, empty database on the test MariaDB; its DSN is yielded and it is dropped after."""
    name = f"syncd_t_{uuid.uuid4().hex[:12]}"
    conn = await _admin_connect()
    async with conn.cursor() as cur:
        await cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    base = MYSQL_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        async with conn.cursor() as cur:
            await cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()

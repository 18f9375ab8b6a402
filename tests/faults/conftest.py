"""Fixtures of the fault campaign: simulators with the daemon, and a private MariaDB database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from syncd.config import MysqlDsn
from tests.conftest import MYSQL_DSN
from tests.e2e.env import Env


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    """Salesforce and ActiveCampaign simulators; every daemon started is killed at the end."""
    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.close()


def mysql_admin() -> pymysql.connections.Connection:  # type: ignore[type-arg]
    """An autocommit connection to the test MariaDB server (never stopped by these tests)."""
    d = MysqlDsn.parse(MYSQL_DSN)
    return pymysql.connect(
        host=d.host, port=d.port, user=d.user, password=d.password or "", autocommit=True
    )


@pytest.fixture
def mysql_db() -> Iterator[tuple[str, str]]:
    """A fresh database on the shared MariaDB: (database name, DSN); dropped afterwards."""
    name = f"syncd_f_{uuid.uuid4().hex[:12]}"
    conn = mysql_admin()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    try:
        yield name, f"{MYSQL_DSN.rsplit('/', 1)[0]}/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()

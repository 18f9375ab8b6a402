"""dbsync with HubSpot as the hub: a real MariaDB table, the HubSpot simulator over loopback.

delete_missing archives the contacts dbsync added (or only takes them off the list), a row
that comes back is synced again as new, and a NULL clears the mapped property.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomysql
import pytest

from syncd.config import DbsyncSettings, HttpSettings, HubSettings, MysqlDsn, RateLimitSettings
from syncd.dbsync.component import default_source
from syncd.dbsync.runner import DbsyncRunner
from syncd.model import RunTrigger
from syncd.sandbox.common import bound_port, serve
from syncd.sandbox.hubspot.app import HubSpotSandbox, create_hubspot_app
from syncd.sandbox.hubspot.objects import HsObject
from syncd.store.sqlite import SqliteStore
from syncd.vendors.hubspot.client import HubSpotConnector
from tests.integration.dbsync_support import COLUMNS, TABLE_SQL

TOKEN = "pat-na1-dbsync-token"
MAPPING = {"email": "email", "first_name": "firstname", "company": "company"}
ROWS = [
    (1, "ada@example.com", "Ada", None, "Analytical"),
    (2, "alan@example.com", "Alan", None, "Bletchley"),
    (3, "grace@example.com", "Grace", None, "Navy"),
]


@dataclass
class HsEnv:
    """A people table, the HubSpot simulator with one manual list, a store and a runner."""

    dsn: str
    sb: HubSpotSandbox
    list_id: str
    runner: DbsyncRunner
    conn: Any

    def cfg(self, **over: Any) -> DbsyncSettings:
        raw: dict[str, Any] = {
            "name": "people",
            "dsn": self.dsn,
            "table": "people",
            "list": self.list_id,
            "mapping": dict(MAPPING),
            "delete_safety_threshold": 0.3,
        }
        raw.update(over)
        return DbsyncSettings(**raw)

    async def sql(self, statement: str) -> None:
        async with self.conn.cursor() as cur:
            await cur.execute(statement)

    async def insert(self, rows: list[tuple[Any, ...]]) -> None:
        padded = [tuple(r) + (None,) * (len(COLUMNS) - len(r)) for r in rows]
        marks = ", ".join(["%s"] * len(COLUMNS))
        async with self.conn.cursor() as cur:
            await cur.executemany(
                f"INSERT INTO people ({', '.join(COLUMNS)}) VALUES ({marks})", padded
            )

    def contact(self, email: str) -> HsObject | None:
        return self.sb.by_email(email)

    def member(self, email: str) -> bool:
        c = self.contact(email)
        return c is not None and c.id in self.sb.lists[self.list_id].members

    def archived(self, email: str) -> int:
        return sum(
            1
            for r in self.sb.objects["contacts"].values()
            if r.archived and str(r.properties.get("email", "")).lower() == email
        )


@pytest.fixture
async def hs(mysql_database: str, tmp_path: Path) -> AsyncIterator[HsEnv]:
    sb = HubSpotSandbox(search_rate_limit=None)
    list_id = sb.create_list("Imported")
    http = await serve(create_hubspot_app(sb, token=TOKEN, rate_limit=None))
    hub = HubSpotConnector(
        HubSettings(
            kind="hubspot",
            base_url=f"http://127.0.0.1:{bound_port(http)}",
            api_token=TOKEN,  # type: ignore[arg-type]
            rate_limit=RateLimitSettings(requests=10_000, per_seconds=1.0),
            http=HttpSettings(retry_attempts=3, retry_base_delay=0.01, retry_max_delay=0.05),
        ),
        search_rate=(10_000, 1.0),
    )
    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.open()
    d = MysqlDsn.parse(mysql_database)
    conn = await aiomysql.connect(
        host=d.host, port=d.port, user=d.user, password=d.password, db=d.database, autocommit=True
    )
    async with conn.cursor() as cur:
        await cur.execute(TABLE_SQL)
    runner = DbsyncRunner(store, hub, default_source, owner="test", lock_ttl=5.0)
    try:
        yield HsEnv(mysql_database, sb, list_id, runner, conn)
    finally:
        conn.close()
        await hub.close()
        await store.close()
        await http.cleanup()


async def test_delete_missing_archives_and_a_returning_row_is_created_again(hs: HsEnv) -> None:
    await hs.insert(ROWS)
    cfg = hs.cfg(delete_missing=True)
    first = await hs.runner.run(cfg, RunTrigger.MANUAL)
    assert first.status == "succeeded", first.error
    assert first.counts["created"] == 3 and all(hs.member(str(r[1])) for r in ROWS)
    grace_id = hs.contact("grace@example.com").id  # type: ignore[union-attr]
    await hs.sql("DELETE FROM people WHERE id = 3")
    report = await hs.runner.run(cfg, RunTrigger.MANUAL)
    assert report.status == "succeeded", report.error
    assert report.counts["deleted"] == 1
    assert hs.contact("grace@example.com") is None
    assert hs.sb.objects["contacts"][grace_id].archived
    assert hs.member("ada@example.com") and hs.member("alan@example.com")
    await hs.insert(ROWS[2:])
    back = await hs.runner.run(cfg, RunTrigger.MANUAL)
    assert back.status == "succeeded", back.error
    assert back.counts["created"] == 1
    grace = hs.contact("grace@example.com")
    assert grace is not None and grace.id != grace_id
    assert grace.properties["firstname"] == "Grace" and hs.member("grace@example.com")
    assert hs.archived("grace@example.com") == 1


async def test_unsubscribe_action_takes_off_the_list_and_puts_back(hs: HsEnv) -> None:
    await hs.insert(ROWS)
    cfg = hs.cfg(delete_missing=True, delete_missing_action="unsubscribe")
    await hs.runner.run(cfg, RunTrigger.MANUAL)
    grace_id = hs.contact("grace@example.com").id  # type: ignore[union-attr]
    await hs.sql("DELETE FROM people WHERE id = 3")
    report = await hs.runner.run(cfg, RunTrigger.MANUAL)
    assert report.counts["deleted"] == 1
    assert hs.contact("grace@example.com") is not None and not hs.member("grace@example.com")
    await hs.insert(ROWS[2:])
    back = await hs.runner.run(cfg, RunTrigger.MANUAL)
    assert back.status == "succeeded", back.error
    assert hs.member("grace@example.com")
    assert hs.contact("grace@example.com").id == grace_id  # type: ignore[union-attr]
    assert hs.archived("grace@example.com") == 0


async def test_null_clears_a_property(hs: HsEnv) -> None:
    await hs.insert(ROWS)
    await hs.runner.run(hs.cfg(), RunTrigger.MANUAL)
    await hs.sql("UPDATE people SET company = NULL WHERE id = 1")
    await hs.runner.run(hs.cfg(null_clears=False), RunTrigger.MANUAL)
    assert hs.contact("ada@example.com").properties["company"] == "Analytical"  # type: ignore[union-attr]
    report = await hs.runner.run(hs.cfg(), RunTrigger.MANUAL)
    assert report.status == "succeeded", report.error
    assert hs.contact("ada@example.com").properties.get("company") is None  # type: ignore[union-attr]

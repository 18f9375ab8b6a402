"""Shared setup of the dbsync tests: a MariaDB table, the AC sandbox, a SQLite store, a runner."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomysql
import pytest

from syncd.config import DbsyncSettings, HttpSettings, HubSettings, MysqlDsn, RateLimitSettings
from syncd.dbsync.component import default_source
from syncd.dbsync.runner import DbsyncRunner
from syncd.sandbox.activecampaign.app import ActiveCampaignSandbox, create_activecampaign_app
from syncd.sandbox.activecampaign.state import Contact
from syncd.sandbox.common import bound_port, serve
from syncd.store.sqlite import SqliteStore
from syncd.vendors.activecampaign.client import ActiveCampaignConnector

TOKEN = "ac-test-token"
LIST_ID = 1
OTHER_LIST = 2
WRITE_ENDPOINTS = ("POST", "PUT", "DELETE")
TABLE_SQL = """
CREATE TABLE people (
  id INT PRIMARY KEY,
  email VARCHAR(400) NULL,
  first_name TEXT NULL,
  last_name VARCHAR(255) NULL,
  company TEXT NULL,
  tag_list TEXT NULL,
  score INT NULL,
  country VARCHAR(40) NULL
) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
"""
COLUMNS = ("id", "email", "first_name", "last_name", "company", "tag_list", "score", "country")
MAPPING = {
    "email": "email",
    "first_name": "firstName",
    "last_name": "lastName",
    "company": "COMPANY",
    "tag_list": "tags",
}


@dataclass
class Env:
    """Everything one dbsync test needs."""

    dsn: str
    sb: ActiveCampaignSandbox
    base_url: str
    hub: ActiveCampaignConnector
    store: SqliteStore
    runner: DbsyncRunner
    conn: Any
    tmp: Path

    def cfg(self, **over: Any) -> DbsyncSettings:
        """A dbsync entry for the `people` table (overrides as keyword arguments)."""
        raw: dict[str, Any] = {
            "name": "people",
            "dsn": self.dsn,
            "table": "people",
            "list": str(LIST_ID),
            "mapping": dict(MAPPING),
        }
        raw.update(over)
        return DbsyncSettings(**raw)

    async def sql(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on the source database (as the test, not as syncd)."""
        async with self.conn.cursor() as cur:
            await cur.execute(statement, list(params))
            rows = await cur.fetchall()
        return [tuple(r) for r in rows or ()]

    async def insert(self, rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows (tuples in COLUMNS order, shorter ones padded with NULL)."""
        padded = [tuple(r) + (None,) * (len(COLUMNS) - len(r)) for r in rows]
        marks = ", ".join(["%s"] * len(COLUMNS))
        async with self.conn.cursor() as cur:
            await cur.executemany(
                f"INSERT INTO people ({', '.join(COLUMNS)}) VALUES ({marks})", padded
            )

    async def checksum(self) -> Any:
        """CHECKSUM TABLE of the source table."""
        return (await self.sql("CHECKSUM TABLE people"))[0][1]

    def contact(self, email: str) -> Contact | None:
        """The live hub contact with this email."""
        return self.sb.contact_by_email(email)

    def copies(self, email: str) -> int:
        """How many hub contacts (live or deleted) carry this email."""
        return sum(1 for c in self.sb.contacts.values() if c.email.lower() == email.lower())

    def status(self, email: str, list_id: int = LIST_ID) -> int | None:
        """The contact's status on a list (1 active, 2 unsubscribed), None if not a member."""
        c = self.contact(email)
        row = self.sb.memberships.get((c.id, list_id)) if c else None
        return None if row is None else int(row["status"])

    def tags(self, email: str) -> set[str]:
        """Tag names of a contact."""
        c = self.contact(email)
        if c is None:
            return set()
        return {str(self.sb.tags[t]["tag"]) for t in self.sb.tags_of.get(c.id, {})}

    def company(self, email: str) -> str | None:
        """The COMPANY custom field of a contact."""
        c = self.contact(email)
        return None if c is None else c.field_values.get(self.company_field)

    @property
    def company_field(self) -> int:
        """Id of the COMPANY field."""
        return next(i for i, f in self.sb.fields.items() if f["perstag"] == "COMPANY")

    def write_requests(self) -> int:
        """API requests received that could change data."""
        return sum(n for ep, n in self.sb.requests.items() if ep.split(" ")[0] in WRITE_ENDPOINTS)

    def seed_contact(self, email: str, first: str = "Old", *, status: int | None = None) -> int:
        """A contact that exists in the hub before any dbsync."""
        c = self.sb.insert_contact(email, first_name=first)
        if status is not None:
            self.sb.set_membership(c.id, LIST_ID, status, keep_unsub=False)
        return c.id


def hub_settings(base_url: str) -> HubSettings:
    """Hub settings for the sandbox with a generous limit and quick retries."""
    return HubSettings(
        kind="activecampaign",
        base_url=base_url,
        api_token=TOKEN,
        rate_limit=RateLimitSettings(requests=10_000, per_seconds=1.0),
        http=HttpSettings(retry_attempts=3, retry_base_delay=0.01, retry_max_delay=0.05),
    )


def make_sandbox() -> ActiveCampaignSandbox:
    """An AC account with the COMPANY field and two lists; imports take AC's time, scaled
    (tests/timing.py)."""
    sb = ActiveCampaignSandbox()
    for title, perstag in (("Company", "COMPANY"), ("Notes", "NOTES")):
        fid = sb.next_id("field")
        sb.fields[fid] = {"title": title, "perstag": perstag, "type": "text", "isrequired": "0"}
    for name in ("Imported", "Other"):
        lid = sb.next_id("list")
        sb.lists[lid] = {"name": name, "stringid": name.lower(), "sender_reminder": ""}
    cid = sb.next_id("campaign")
    sb.campaigns[cid] = {"name": "Welcome", "list": LIST_ID, "sdate": 1.7e9}
    return sb


@pytest.fixture
async def env(mysql_database: str, tmp_path: Path) -> AsyncIterator[Env]:
    """A `people` table, the AC sandbox on loopback, a SQLite store and a runner."""
    sb = make_sandbox()
    # The per-second limit is off, and the client runs unpaced (hub_settings), so that these
    # tests of dbsync's logic do not wait on it: the pacing against it is tested in
    # test_activecampaign_connector.py. Import latency and the import limits stay on.
    runner_http = await serve(create_activecampaign_app(sb, api_token=TOKEN, rate_limit=None))
    base = f"http://127.0.0.1:{bound_port(runner_http)}/api/3"
    hub = ActiveCampaignConnector(hub_settings(base), import_poll_interval=0.01)
    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.open()
    d = MysqlDsn.parse(mysql_database)
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
        await cur.execute(TABLE_SQL)
    runner = DbsyncRunner(store, hub, default_source, owner="test", lock_ttl=5.0)
    try:
        yield Env(mysql_database, sb, base, hub, store, runner, conn, tmp_path)
    finally:
        conn.close()
        await hub.close()
        await store.close()
        await runner_http.cleanup()

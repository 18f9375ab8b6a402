"""Sizes the issue names: paging 10,000 entries, exporting 100,000 records in flat memory,
and the same API over the MariaDB store."""

from __future__ import annotations

import gc
import json
import tracemalloc
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.model import Direction, ErrorCategory
from syncd.store.mysql import MysqlStore
from syncd.store.sql.dialect import Tx, dump_json, utcnow
from syncd.store.sqlite import SqliteStore
from tests.integration.overview_support import TAGS, LiveApp, change, seed

N_ENTRIES = 10_000


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveApp]:
    app = LiveApp(tmp_path)
    try:
        yield app
    finally:
        app.close()


async def seed_10k(store: SqliteStore) -> dict[str, int]:
    """10,000 inbound entries: 1,200 error, 1,000 processed, 600 excluded, rest pending."""
    await store.enqueue([change(i) for i in range(N_ENTRIES)])
    counts = {"error": 1200, "processed": 1000, "excluded": 600}
    for status, n in counts.items():
        claimed = await store.claim_pending(
            Direction.INBOUND, limit=n, owner="seed", lease_seconds=600
        )
        for e in claimed:
            if status == "error":
                await store.fail(
                    e.id,
                    owner="seed",
                    category=ErrorCategory.DUPLICATE,
                    code="DUPLICATES_DETECTED",
                    message="Use one of these records?",
                )
            elif status == "processed":
                await store.complete(e.id, owner="seed", transferred={"object": "contact"})
            else:
                await store.exclude(e.id, owner="seed", reason="filtered: by rule")
    counts["pending"] = N_ENTRIES - sum(counts.values())
    return counts


def page_all(live: LiveApp, query: str, limit: int = 500) -> list[int]:
    out: list[int] = []
    cursor: int | None = None
    while True:
        q = f"/api/v1/queue?limit={limit}&{query}" + (f"&before={cursor}" if cursor else "")
        status, body = live.json("GET", q)
        assert status == 200, body
        out += [e["id"] for e in body["entries"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return out


def test_filters_and_paging_over_10000_entries(live: LiveApp) -> None:
    counts = live.run(seed_10k(live.store), timeout=300)
    everything = page_all(live, "")
    assert len(everything) == N_ENTRIES == len(set(everything))
    assert everything == sorted(everything, reverse=True)
    for status, n in counts.items():
        got = page_all(live, f"status={status}", limit=317)
        assert len(got) == n == len(set(got)), status
        assert got == sorted(got, reverse=True)
    leads = page_all(live, "object=lead")
    contacts = page_all(live, "object=contact")
    assert len(leads) == N_ENTRIES // 5 and not set(leads) & set(contacts)
    assert len(leads) + len(contacts) == N_ENTRIES
    assert len(page_all(live, "q=lovelace999")) == 11  # 999 and 9990..9999
    errors = page_all(live, "object=contact&status=error&error_category=duplicate", limit=499)
    _, h = live.json("GET", "/api/v1/health")
    failing = h["objects"]["contact"]["failing"]
    lead_errors = h["objects"]["lead"]["failing"]["total"]
    assert failing["total"] == len(errors) == counts["error"] - lead_errors
    assert failing["by_category"][0]["category"] == "duplicate"
    _, out = live.json("POST", "/api/v1/queue/retry?object=contact")
    assert out["retried"] == len(errors)
    assert page_all(live, "object=contact&status=error") == []


async def bulk_links(store: SqliteStore, n: int) -> None:
    """Insert n links in a few transactions through the store's own transaction runner.

    upsert_link is one durable transaction per link (4 s per 2,000 here); the export test
    needs 100,000 rows, so it fills the table with batched INSERTs instead.
    """
    now = store.dialect.ts(utcnow())
    tags = dump_json(sorted(TAGS))
    sql = (
        "INSERT INTO record_links (object, hub_id, crm_id, email, name, sync_tags, status,"
        " content_hash, deleted_side, last_synced_at, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, 'linked', NULL, NULL, ?, ?, ?)"
    )
    for start in range(0, n, 20_000):
        rows = [
            (
                "contact",
                str(i),
                f"003X{i:011d}",
                f"bulk{i}@example.com",
                f"Bulk Person {i}",
                tags,
                now,
                now,
                now,
            )
            for i in range(start, min(n, start + 20_000))
        ]

        async def op(tx: Tx, rows: list[tuple[Any, ...]] = rows) -> None:
            await tx.executemany(sql, rows)

        await store._run(op)
    await store.recount_tallies()  # the rows went in by hand, past the maintained counts


def export_peak(live: LiveApp, path: str) -> tuple[int, int, int]:
    """(rows, bytes, traced peak) of streaming `path` and discarding it chunk by chunk."""
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    req = urllib.request.Request(live.base + path)
    req.add_header("Authorization", f"Bearer {live.token}")
    rows = size = 0
    with urllib.request.urlopen(req, timeout=300) as resp:
        while chunk := resp.read(65536):
            size += len(chunk)
            rows += chunk.count(b"\n")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return rows, size, peak


@pytest.mark.slow
def test_export_of_100000_records_streams_in_flat_memory(live: LiveApp) -> None:
    live.run(bulk_links(live.store, 100_000), timeout=300)
    small_rows, _, small_peak = export_peak(live, "/api/v1/records/export.csv?q=bulk1000")
    assert small_rows == 1 + 11  # header, bulk1000 and bulk10000..bulk10009
    rows, size, peak = export_peak(live, "/api/v1/records/export.csv")
    assert rows == 100_001  # header + every record
    assert size > 9_000_000
    # Constant memory: the peak does not grow with the export. A buffered export would hold
    # the whole ~10 MB body plus its row objects; streaming holds one 1,000-row page.
    assert peak < size / 4, (peak, size)
    assert peak < small_peak + 4_000_000, (peak, small_peak)


def test_json_export_streams_in_flat_memory(live: LiveApp) -> None:
    live.run(bulk_links(live.store, 4000), timeout=300)
    one_page, _, page_peak = export_peak(live, "/api/v1/records/export.json?q=bulk1")
    rows, size, peak = export_peak(live, "/api/v1/records/export.json")
    assert one_page == 1112  # bulk1, bulk10..19, bulk100..199, bulk1000..1999, then "]"
    assert rows == 4001 and size > 1_000_000  # one record a line, then the closing bracket
    # Four pages cost what one page costs: a buffered export would add ~3,000 rows of
    # strings and dicts (several MB) to the peak.
    assert peak < page_peak + 1_000_000, (peak, page_peak)


def test_json_export_is_one_valid_array(live: LiveApp) -> None:
    live.run(bulk_links(live.store, 2500))
    status, raw, headers = live.request("GET", "/api/v1/records/export.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    data = json.loads(raw)
    assert len(data) == 2500 and data[0]["hub_id"] == "0" and data[-1]["hub_id"] == "2499"


@pytest.fixture
def live_mysql(tmp_path: Path, mysql_database: str) -> Iterator[LiveApp]:
    app = LiveApp(tmp_path, store=lambda: MysqlStore(mysql_database))
    try:
        yield app
    finally:
        app.close()


def test_same_api_over_mariadb(live_mysql: LiveApp) -> None:
    live = live_mysql
    seeded = live.run(seed(live.store))
    got = page_all(live, "status=error,excluded", limit=7)
    assert sorted(got) == sorted(seeded.error + seeded.excluded)
    assert live.json("DELETE", f"/api/v1/queue/{seeded.processed[0]}")[0] == 409
    assert live.json("DELETE", f"/api/v1/queue/{seeded.pending[0]}")[0] == 200
    out = live.json("POST", "/api/v1/queue/retry", {"ids": seeded.error[:3]})[1]
    assert out["retried"] == 3
    _, h = live.json("GET", "/api/v1/health")
    assert h["objects"]["contact"]["excluded"]["by_group"] == {"untagged": 10}
    status, raw, _ = live.request("GET", "/api/v1/records/export.csv")
    assert status == 200 and raw.startswith(b"id,object,hub_id")

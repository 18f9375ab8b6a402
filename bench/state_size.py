"""Benchmark 5: a big state store — 1,000,000 linked records and their queue history.

The SQLite store is migrated through the store API, then filled: 1,000,000 record links
(one executemany) and 1,000,000 inbound queue entries enqueued through `StateStore.enqueue`
in batches, most of them then marked processed (some error, some excluded, 1,000 left
pending) with plain SQL, as a long-running install would have them. `syncd run` is started
on that file; printed: its RSS and the latency (p50/p99/max over 200 sequential requests)
of ``GET /api/v1/status`` and of the overview endpoints that exist (queue list, health,
records). Targets: RSS <= 150 MB, p99 <= 200 ms.

    .venv/bin/python -m bench.state_size [--links 1000000] [--entries 1000000] [--requests 200]

Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    NO_PULLS,
    QUIET_INBOUND,
    RssSampler,
    peak_rss_mb,
    percentile,
    record,
    rss_mb,
    start_bench_daemon,
    table,
    timed_gets,
)

ENDPOINTS = (
    "/api/v1/status",
    "/api/v1/queue",
    "/api/v1/queue?status=error",
    "/api/v1/health",
    "/api/v1/records",
    "/readyz",
    "/metrics",
)
PENDING = 1000


async def fill(path: Path, links: int, entries: int, batch: int) -> tuple[float, float]:
    """Migrate and fill the store; (seconds for links, seconds for entries)."""
    from syncd.model import Change, Direction, ObjectType
    from syncd.store.sqlite import SqliteStore

    store = SqliteStore(path)
    await store.open()
    started = time.perf_counter()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO record_links (object, hub_id, crm_id, email, name, sync_tags, status,"
            " content_hash, last_synced_at, created_at, updated_at)"
            " VALUES ('contact', ?, ?, ?, ?, '[\"added-to-salesforce-contact\"]', 'linked',"
            " ?, ?, ?, ?)",
            (
                (
                    str(i),
                    f"003{i:015d}",
                    f"person{i}@example.com",
                    f"Person {i}",
                    f"{i:064x}",
                    now,
                    now,
                    now,
                )
                for i in range(1, links + 1)
            ),
        )
    links_s = time.perf_counter() - started
    started = time.perf_counter()
    for lo in range(1, entries + 1, batch):
        await store.enqueue(
            [
                Change(
                    direction=Direction.INBOUND,
                    object=ObjectType.CONTACT,
                    record_key=str(i),
                    source="webhook",
                    fields={
                        "email": f"person{i}@example.com",
                        "firstName": "Person",
                        "lastName": str(i),
                        "tags": ["added-to-salesforce-contact"],
                    },
                    email=f"person{i}@example.com",
                    name=f"Person {i}",
                    event="update",
                )
                for i in range(lo, min(lo + batch, entries + 1))
            ]
        )
    await store.close()
    # History: most entries processed, 1 % errors, 1 % excluded, the newest still pending.
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE queue_entries SET status = CASE"
            " WHEN id % 100 = 1 THEN 'error' WHEN id % 100 = 2 THEN 'excluded'"
            " ELSE 'processed' END, pending_key = NULL, attempts = 1,"
            " error_category = CASE WHEN id % 100 = 1 THEN 'validation' END,"
            " error_code = CASE WHEN id % 100 = 1 THEN 'INVALID_EMAIL_ADDRESS' END,"
            " error_message = CASE WHEN id % 100 = 1 THEN 'invalid email' END,"
            " transferred = '{}' WHERE id <= (SELECT MAX(id) FROM queue_entries) - ?",
            (PENDING,),
        )
    # The statuses were set by hand above: rebuild the store's maintained counts.
    store = SqliteStore(path)
    await store.open()
    await store.recount_tallies()
    await store.close()
    return links_s, time.perf_counter() - started


def main() -> None:
    """Run the benchmark and print/record the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--links", type=int, default=1_000_000)
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--budget", type=float, default=30.0, help="seconds per endpoint at most")
    args = p.parse_args()
    from syncd.sandbox.runner import SandboxThread

    with tempfile.TemporaryDirectory(prefix="syncd-bench-state-") as t:
        tmp = Path(t)
        db = tmp / "state-state" / "syncd.sqlite3"
        db.parent.mkdir()
        links_s, entries_s = asyncio.run(fill(db, args.links, args.entries, args.batch))
        size_mb = sum(f.stat().st_size for f in db.parent.iterdir()) / 1e6
        print(
            f"filled: {args.links:,} links in {links_s:.1f} s, {args.entries:,} entries in"
            f" {entries_s:.1f} s; store files {size_mb:,.0f} MB"
        )
        sb = SandboxThread(("salesforce", "activecampaign"), rate_limits=False)
        try:
            d = start_bench_daemon(tmp, sb.set, name="state", extra=QUIET_INBOUND + NO_PULLS)
            try:
                pid = d.proc.pid
                time.sleep(8)  # first store ping, first scheduled pulls
                rss_ready = rss_mb(pid)
                sampler = RssSampler(pid)
                rows: list[list[Any]] = []
                for path in ENDPOINTS:
                    lat, bad = timed_gets(d.base + path, args.requests, d.token, args.budget)
                    if bad == len(lat):
                        rows.append([path, "absent (not 200)", "", "", ""])
                        continue
                    rows.append(
                        [path, len(lat) - bad, percentile(lat, 50), percentile(lat, 99), max(lat)]
                    )
                peak = max(sampler.stop(), rss_mb(pid))
                hwm = peak_rss_mb(pid)
            finally:
                d.kill()
        finally:
            sb.close()
    table(
        ["GET", "200s (of --requests)", "p50 ms", "p99 ms", "max ms"],
        rows,
        title=f"state size: {args.links:,} links, {args.entries:,} queue entries"
        f" ({size_mb:,.0f} MB SQLite); daemon RSS {rss_ready:.0f} MB ready,"
        f" {peak:.0f} MB max under requests, VmHWM {hwm:.0f} MB"
        " (targets: RSS <= 150 MB, p99 <= 200 ms)",
    )
    record(
        f"state_size ({args.links:,} links, {args.entries:,} entries, sqlite)",
        f"RSS {rss_ready:.0f} MB ready, max {peak:.0f} MB, VmHWM {hwm:.0f} MB; "
        + ", ".join(
            f"{r[0]} p99 {r[3]:.0f} ms (n={r[1]})" for r in rows if isinstance(r[3], float)
        ),
    )


if __name__ == "__main__":
    main()

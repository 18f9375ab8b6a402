"""The plain script dbsync is measured against: the same table into the same list, no state.

It streams the table with pymysql (an unbuffered cursor), skips rows without a valid email,
and posts bulk imports of 250 with aiohttp, waiting for each import to complete before the
next — what an operator's one-off script does. It keeps nothing, so a second run costs as
much as the first. `bench.dbsync` runs it against the same simulator and table and prints
syncd's times as ratios of its time.

    .venv/bin/python -m bench.plain_dbsync --port PORT [--token T] [--list 1] [--field 1]

Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from typing import Any

import aiohttp
import pymysql
import pymysql.cursors

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PER_IMPORT = 250


def _entry(row: tuple[Any, ...], list_id: str, field_id: str) -> dict[str, Any] | None:
    _, email, first, last, company, tags = row
    email = (email or "").strip().lower()
    if not EMAIL.match(email):
        return None
    out: dict[str, Any] = {
        "email": email,
        "first_name": first or "",
        "last_name": last or "",
        "subscribe": [{"listid": list_id}],
    }
    if company:
        out["fields"] = [{"id": int(field_id), "value": company}]
    if tags:
        out["tags"] = [t for t in tags.split(",") if t]
    return out


async def _import(
    http: aiohttp.ClientSession, base: str, contacts: list[dict[str, Any]], poll: float
) -> None:
    async with http.post(f"{base}/import/bulk_import", json={"contacts": contacts}) as resp:
        resp.raise_for_status()
        batch = (await resp.json())["batchId"]
    while True:
        async with http.get(f"{base}/import/info", params={"batchId": batch}) as resp:
            resp.raise_for_status()
            status = (await resp.json()).get("status")
        if status in ("completed", "failed", "interrupted"):
            return
        await asyncio.sleep(poll)


async def run_plain(
    port: int,
    token: str,
    *,
    dsn: dict[str, Any],
    list_id: str = "1",
    field_id: str = "1",
    poll: float = 0.05,
) -> tuple[float, int]:
    """Send the whole table once; (wall seconds, imports)."""
    started = time.perf_counter()
    base = f"http://127.0.0.1:{port}/api/3"
    conn = pymysql.connect(**dsn, cursorclass=pymysql.cursors.SSCursor)
    imports = 0
    try:
        async with aiohttp.ClientSession(headers={"Api-Token": token}) as http:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT id, email, first_name, last_name, company, tags FROM contacts"
                    " ORDER BY id"
                )
                batch: list[dict[str, Any]] = []
                while rows := cur.fetchmany(5000):
                    for row in rows:
                        entry = _entry(row, list_id, field_id)
                        if entry is None:
                            continue
                        batch.append(entry)
                        if len(batch) == PER_IMPORT:
                            await _import(http, base, batch, poll)
                            imports += 1
                            batch = []
                if batch:
                    await _import(http, base, batch, poll)
                    imports += 1
    finally:
        conn.close()
    return time.perf_counter() - started, imports


def main() -> None:
    """Run the plain script once against a running simulator and print its time."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token", default="bench-token")
    ap.add_argument("--database", default="syncd_bench_dbsync")
    ap.add_argument("--list", default="1")
    ap.add_argument("--field", default="1")
    args = ap.parse_args()
    dsn = {"host": "127.0.0.1", "port": 3306, "user": "root", "database": args.database}
    wall, imports = asyncio.run(
        run_plain(args.port, args.token, dsn=dsn, list_id=args.list, field_id=args.field)
    )
    print(json.dumps({"plain_seconds": round(wall, 2), "imports": imports}))


if __name__ == "__main__":
    main()

"""Benchmark: a 1,000,000-row MariaDB table into an ActiveCampaign sandbox list, twice.

Prints, for the first (full) run and a second run with nothing changed: wall seconds, rows/s,
peak RSS of this process, the API calls the sandbox received, the CPU seconds of this
process, of the sandbox and of the local MariaDB server (and their sum spread over all
cores: the least wall time the run could take on this machine), the sandbox's peak RSS;
plus the time the plain ``mariadb --quick`` client needs to stream the same columns.
Figures only, no assertions.

    .venv/bin/python -m bench.dbsync [--rows 1000000] [--keep]

The sandbox runs in its own process (as the real hub would be elsewhere); rate limits are
off on both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

DB = "syncd_bench_dbsync"
ROOT = "mysql://root@127.0.0.1:3306"
TOKEN = "bench-token"
SANDBOX_SCRIPT = """
import asyncio, sys
from syncd.sandbox.activecampaign.app import ActiveCampaignSandbox, create_activecampaign_app
from syncd.sandbox.common import bound_port, keep_data_out_of_collector, serve

async def main():
    sb = ActiveCampaignSandbox(import_latency=0.0)
    fid = sb.next_id("field")
    sb.fields[fid] = {"title": "Company", "perstag": "COMPANY", "type": "text", "isrequired": "0"}
    lid = sb.next_id("list")
    sb.lists[lid] = {"name": "Imported", "stringid": "imported", "sender_reminder": ""}
    runner = await serve(create_activecampaign_app(sb, api_token=sys.argv[1], rate_limit=None))
    print(bound_port(runner), flush=True)
    await keep_data_out_of_collector()  # as `syncd sandbox` does

asyncio.run(main())
"""
FIRST = ("Ada", "Alan", "Grace", "Linus", "Edsger", "Barbara", "Ken", "Margaret", "Dennis")
LAST = ("Lovelace", "Turing", "Hopper", "Torvalds", "Dijkstra", "Liskov", "Thompson")
TAGS = ("vip", "newsletter", "trial", "partner", "")


def mariadb(*args: str, stdin: Any = None, stdout: Any = subprocess.DEVNULL) -> None:
    """Run the mariadb client as root on the local server."""
    subprocess.run(
        ["mariadb", "--protocol=tcp", "-h127.0.0.1", "-uroot", *args],
        check=True,
        stdin=stdin,
        stdout=stdout,
    )


def make_table(rows: int, seed: int = 1234) -> None:
    """The contacts table with a few % invalid emails and duplicate emails (fixed seed)."""
    rng = random.Random(seed)
    mariadb("-e", f"DROP DATABASE IF EXISTS {DB}; CREATE DATABASE {DB} CHARACTER SET utf8mb4")
    mariadb(
        DB,
        "-e",
        "CREATE TABLE contacts (id INT PRIMARY KEY, email VARCHAR(255), first_name VARCHAR(100),"
        " last_name VARCHAR(100), company VARCHAR(100), tags VARCHAR(100))",
    )
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as f:
        for i in range(1, rows + 1):
            r = rng.random()
            if r < 0.03:
                email = f"broken{i}.example.com"  # no @: invalid
            elif r < 0.05 and i > 10:
                j = rng.randint(1, i - 1)
                email = f"Person{j}@Example.com "  # duplicate of an earlier row
            else:
                email = f"person{i}@example.com"
            tag = ",".join(t for t in rng.sample(TAGS, 2) if t)
            f.write(f"{i}\t{email}\t{rng.choice(FIRST)}\t{rng.choice(LAST)}\tCo {i % 997}\t{tag}\n")
        path = f.name
    try:
        mariadb(
            "--local-infile=1",
            DB,
            "-e",
            f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE contacts "
            "FIELDS TERMINATED BY '\\t' LINES TERMINATED BY '\\n'",
        )
    finally:
        os.unlink(path)


def raw_read_seconds() -> float:
    """Time of the plain client streaming the same columns."""
    started = time.perf_counter()
    mariadb(
        "--quick",
        "--batch",
        DB,
        "-e",
        "SELECT id, email, first_name, last_name, company, tags FROM contacts",
    )
    return time.perf_counter() - started


def peak_rss_mb(pid: int | None = None) -> float:
    """VmHWM of a process (this one by default) in MB."""
    for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss() -> None:
    """Reset VmHWM (Linux: writing 5 to clear_refs)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one by default), from /proc."""
    fields = Path(f"/proc/{pid or 'self'}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mariadb_pid() -> int | None:
    """The local MariaDB/MySQL server's pid, when it runs on this machine."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() in ("mariadbd", "mysqld"):
                    return int(entry.name)
    return None


def sandbox_stats(port: int) -> dict[str, Any]:
    """Request counts per endpoint from the sandbox."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sandbox/stats") as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


def calls(before: dict[str, Any], after: dict[str, Any]) -> tuple[int, int]:
    """(all API calls, write calls) between two stats snapshots."""
    b, a = before["requests"], after["requests"]
    delta = {k: a.get(k, 0) - b.get(k, 0) for k in a}
    writes = sum(n for k, n in delta.items() if k.split(" ")[0] in ("POST", "PUT", "DELETE"))
    return sum(delta.values()), writes


async def run_bench(rows: int, port: int, state: Path, sandbox_pid: int) -> None:
    """Two runs; prints one line per run."""
    from bench.common import record
    from syncd.config import DbsyncSettings, HttpSettings, HubSettings, RateLimitSettings
    from syncd.daemon import settle_heap
    from syncd.dbsync.component import default_source
    from syncd.dbsync.runner import DbsyncRunner
    from syncd.model import RunTrigger
    from syncd.store.sqlite import SqliteStore
    from syncd.vendors.activecampaign.client import ActiveCampaignConnector

    hub = ActiveCampaignConnector(
        HubSettings(
            kind="activecampaign",
            base_url=f"http://127.0.0.1:{port}/api/3",
            api_token=TOKEN,
            rate_limit=RateLimitSettings(requests=1_000_000, per_seconds=1.0),
            http=HttpSettings(retry_base_delay=0.05),
        ),
        import_poll_interval=0.0,
        bulk_rate=None,  # AC's bulk-import pacing off too, like the request rate limit
    )
    store = SqliteStore(state / "bench.sqlite3")
    await store.open()
    cfg = DbsyncSettings(
        name="bench",
        dsn=f"{ROOT}/{DB}",
        table="contacts",
        list="1",
        mapping={
            "email": "email",
            "first_name": "firstName",
            "last_name": "lastName",
            "company": "COMPANY",
            "tags": "tags",
        },
    )
    runner = DbsyncRunner(store, hub, default_source, owner="bench")
    settle_heap()  # as the daemon does once started
    server = mariadb_pid()
    lines: list[str] = []
    try:
        for label in ("first run", "second run (unchanged)"):
            reset_peak_rss()
            before = sandbox_stats(port)
            cpu0, sb_cpu0 = cpu_seconds(), cpu_seconds(sandbox_pid)
            db_cpu0 = cpu_seconds(server) if server else 0.0
            started = time.perf_counter()
            report = await runner.run(cfg, RunTrigger.MANUAL)
            wall = time.perf_counter() - started
            cpu, sb_cpu = cpu_seconds() - cpu0, cpu_seconds(sandbox_pid) - sb_cpu0
            db_cpu = cpu_seconds(server) - db_cpu0 if server else 0.0
            # Everything shares this machine's cores: the run cannot take less wall time
            # than all the CPU time it needs spread over every core.
            floor = (cpu + sb_cpu + db_cpu) / (os.cpu_count() or 1)
            total, writes = calls(before, sandbox_stats(port))
            c = report.counts
            print(
                f"{label:24s} wall {wall:6.1f} s  {c['rows_read'] / wall:9,.0f} rows/s  "
                f"peak RSS {peak_rss_mb():6.1f} MB  API calls {total:,} (writes {writes:,})  "
                f"created {c['created']:,} updated {c['updated']:,} unchanged "
                f"{c['unchanged']:,} failed {c['failed']:,} duplicates {c['duplicates']:,} "
                f"[{report.status}]  CPU s: daemon {cpu:.1f}, sandbox {sb_cpu:.1f}, "
                f"MariaDB {db_cpu:.1f} (all of it over {os.cpu_count()} cores: {floor:.1f} s)  "
                f"sandbox peak RSS {peak_rss_mb(sandbox_pid):,.0f} MB",
                flush=True,
            )
            lines.append(
                f"{label}: {wall:.1f} s = {c['rows_read'] / wall:,.0f} rows/s, writes {writes:,},"
                f" peak RSS {peak_rss_mb():.0f} MB, CPU daemon {cpu:.0f} s / sandbox {sb_cpu:.0f} s"
                f" / MariaDB {db_cpu:.0f} s (over all cores {floor:.0f} s)"
            )
        record(f"dbsync ({rows:,} rows)", "; ".join(lines))
    finally:
        await hub.close()
        await store.close()


def main() -> None:
    """Build the table, start the sandbox, run twice, print figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    ap.add_argument("--reuse", action="store_true", help="reuse an existing bench table")
    args = ap.parse_args()
    if not args.reuse:
        t = time.perf_counter()
        make_table(args.rows)
        print(f"table: {args.rows:,} rows loaded in {time.perf_counter() - t:.1f} s", flush=True)
    print(f"mariadb --quick raw read: {raw_read_seconds():.1f} s", flush=True)
    sandbox = subprocess.Popen(
        [sys.executable, "-c", SANDBOX_SCRIPT, TOKEN], stdout=subprocess.PIPE, text=True
    )
    try:
        assert sandbox.stdout is not None
        port = int(sandbox.stdout.readline())
        # Keep reading its output: a full pipe would stall the sandbox mid-request.
        out = sandbox.stdout
        threading.Thread(target=lambda: [None for _ in out], daemon=True).start()
        with tempfile.TemporaryDirectory() as state:
            asyncio.run(run_bench(args.rows, port, Path(state), sandbox.pid))
    finally:
        sandbox.kill()
        sandbox.wait()
        if not args.keep:
            mariadb("-e", f"DROP DATABASE IF EXISTS {DB}")


if __name__ == "__main__":
    main()

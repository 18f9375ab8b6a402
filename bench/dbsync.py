"""Benchmark: a MariaDB table into an ActiveCampaign sandbox list, twice.

Default mode (limits off, 1,000,000 rows): prints, for the first (full) run and a second run
with nothing changed: wall seconds, rows/s, peak RSS of this process, the API calls the
sandbox received, the CPU seconds of this process, of the sandbox and of the local MariaDB
server (and their sum spread over all cores: the least wall time the run could take on this
machine), the sandbox's peak RSS; plus the time the plain ``mariadb --quick`` client needs to
stream the same columns, and each run's time over that of a plain script doing the same job
on a simulator of its own (``bench.plain_dbsync``: pymysql stream, bulk imports of 250 with
aiohttp, wait for each, no state; issue targets: first run <= 1.5 x, unchanged rerun <=
0.5 x). The sandbox's request rate limit, bulk import limits and import latency are off,
and so are the connector's own limits.

``--realistic`` (100,000 rows by default): the sandbox as ActiveCampaign is — 5 requests/s
per account (429 with Retry-After), 100 bulk imports a minute, each import processed after
5 s — and the connector as the daemon builds it (``build_hub``: the vendor's default request
rate, 100 imports a minute). Prints a default ``dbsync test`` before the first run (wall,
hub calls; issue target <= 10 s and <= 10 calls), the first run (wall, calls by kind,
imports a minute, 429s syncd received, and its time over the two rate-limit floors: the
import floor, ceil(rows/250) imports at 100 a minute, and the request floor, the calls the
run made at 5 a second — target: time / import floor <= 1.10), the unchanged rerun and a
test after the run. Each run takes minutes, mostly waiting on the limits.

    .venv/bin/python -m bench.dbsync [--rows N] [--realistic] [--keep] [--reuse]

The sandbox runs in its own process (as the real hub would be elsewhere). Figures only, no
assertions.
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
from syncd.sandbox.activecampaign.state import DEFAULT_IMPORT_LATENCY
from syncd.sandbox.common import bound_port, keep_data_out_of_collector, serve

async def main():
    realistic = sys.argv[2] == "realistic"
    # Realistic: the vendor's import latency, request rate limit and bulk import limits.
    sb = ActiveCampaignSandbox(import_latency=DEFAULT_IMPORT_LATENCY if realistic else 0.0)
    fid = sb.next_id("field")
    sb.fields[fid] = {"title": "Company", "perstag": "COMPANY", "type": "text", "isrequired": "0"}
    lid = sb.next_id("list")
    sb.lists[lid] = {"name": "Imported", "stringid": "imported", "sender_reminder": ""}
    if realistic:
        app = create_activecampaign_app(sb, api_token=sys.argv[1])
    else:
        app = create_activecampaign_app(
            sb, api_token=sys.argv[1], rate_limit=None, import_limits=False
        )
    runner = await serve(app)
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


def bench_settings() -> Any:
    """The dbsync under test: the contacts table into list 1."""
    from syncd.config import DbsyncSettings

    return DbsyncSettings(
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


async def run_bench(
    rows: int, port: int, state: Path, sandbox_pid: int, plain: float | None = None
) -> None:
    """Two runs; prints one line per run, with its time over the plain script's."""
    from bench.common import record
    from syncd.config import HttpSettings, HubSettings, RateLimitSettings
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
    cfg = bench_settings()
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
            vs_plain = f" = {wall / plain:.2f} x the plain script" if plain else ""
            if plain:
                print(f"{label:24s} {wall:.1f} s / plain script {plain:.1f} s{vs_plain}")
            lines.append(
                f"{label}: {wall:.1f} s{vs_plain} = {c['rows_read'] / wall:,.0f} rows/s,"
                f" writes {writes:,},"
                f" peak RSS {peak_rss_mb():.0f} MB, CPU daemon {cpu:.0f} s / sandbox {sb_cpu:.0f} s"
                f" / MariaDB {db_cpu:.0f} s (over all cores {floor:.0f} s)"
            )
        record(f"dbsync ({rows:,} rows)", "; ".join(lines))
    finally:
        await hub.close()
        await store.close()


def by_kind(delta: dict[str, int]) -> dict[str, int]:
    """AC calls grouped: bulk imports, import status reads, contact reads, other."""
    out = {"imports": 0, "import/info": 0, "contact reads": 0, "other": 0}
    for endpoint, n in delta.items():
        if endpoint.endswith("/import/bulk_import"):
            out["imports"] += n
        elif endpoint.endswith("/import/info"):
            out["import/info"] += n
        elif endpoint.startswith("GET ") and "/contacts" in endpoint:
            out["contact reads"] += n
        else:
            out["other"] += n
    return out


async def run_realistic(rows: int, port: int, state: Path) -> None:
    """Test, first run, unchanged rerun, test, against the vendor's limits; prints figures."""
    from bench.common import floor_ratio, in_process_rate_limited, record, table
    from syncd.config import HubSettings
    from syncd.daemon import settle_heap
    from syncd.dbsync.component import default_source
    from syncd.dbsync.runner import DbsyncRunner
    from syncd.model import RunTrigger
    from syncd.store.sqlite import SqliteStore
    from syncd.vendors.factory import build_hub

    # As the daemon builds it: no [hub.rate_limit] or [hub.bulk_rate_limit] in the config,
    # so the vendor's defaults (HubSettings.effective_rate_limit, 100 imports a minute).
    hub = build_hub(
        HubSettings(
            kind="activecampaign", base_url=f"http://127.0.0.1:{port}/api/3", api_token=TOKEN
        )
    )
    store = SqliteStore(state / "bench.sqlite3")
    await store.open()
    cfg = bench_settings()
    runner = DbsyncRunner(store, hub, default_source, owner="bench")
    settle_heap()
    out: list[list[Any]] = []
    notes: list[str] = []
    try:
        for label, test in (
            ("test before", True),
            ("first run", False),
            ("rerun (unchanged)", False),
            ("test after", True),
        ):
            before, limited0 = sandbox_stats(port), in_process_rate_limited()
            started = time.perf_counter()
            if test:
                report = await runner.test(cfg)
            else:
                report = await runner.run(cfg, RunTrigger.MANUAL)
            wall = time.perf_counter() - started
            after = sandbox_stats(port)["requests"]
            delta = {k: after.get(k, 0) - before["requests"].get(k, 0) for k in after}
            delta = {k: n for k, n in delta.items() if n}
            limited = in_process_rate_limited() - limited0
            kinds = by_kind(delta)
            # 429s count in the sandbox's tally but not against its window.
            served = sum(delta.values()) - limited
            writes = sum(n for k, n in delta.items() if k.split(" ")[0] in ("POST", "PUT"))
            c = report.counts
            import_floor = -(-rows // 250) / 100 * 60  # ceil(rows/250) imports at 100/min
            request_floor = served / 5
            per_min = kinds["imports"] / wall * 60 if wall else 0.0
            out.append(
                [
                    label,
                    report.status,
                    wall,
                    served,
                    limited,
                    writes,
                    kinds["imports"],
                    kinds["import/info"],
                    kinds["contact reads"],
                    kinds["other"],
                    # Rates and floors only mean something for the run that writes.
                    per_min if label == "first run" else "",
                    floor_ratio(wall, import_floor) if label == "first run" else "",
                    floor_ratio(wall, request_floor) if label == "first run" else "",
                ]
            )
            print(
                f"{label}: {wall:.1f} s, calls {served:,} (+{limited} answered 429), created "
                f"{c['created']:,} updated {c['updated']:,} unchanged {c['unchanged']:,} "
                f"failed {c['failed']:,} duplicates {c['duplicates']:,} [{report.status}]"
                + (f" error: {report.error}" if report.error else ""),
                flush=True,
            )
            if test:
                notes.append(f"{label}: {wall:.1f} s, {served} calls")
            elif label == "first run":
                binds = "import" if import_floor >= request_floor else "request"
                notes.append(
                    f"first run: {wall:.1f} s = {wall / 60:.2f} min, {served:,} calls"
                    f" ({kinds['imports']} imports, {kinds['import/info']} import/info,"
                    f" {kinds['contact reads']} contact reads, {kinds['other']} other),"
                    f" {limited} answered 429, {per_min:.1f} imports/min; time / import floor"
                    f" ({import_floor / 60:.1f} min) {floor_ratio(wall, import_floor)},"
                    f" time / request floor ({request_floor / 60:.1f} min)"
                    f" {floor_ratio(wall, request_floor)}; the {binds} floor binds"
                )
            else:
                notes.append(f"rerun: {wall:.1f} s, {served} calls, {writes} writes")
        table(
            [
                "phase",
                "status",
                "wall s",
                "calls",
                "429s",
                "writes",
                "imports",
                "import/info",
                "contact reads",
                "other",
                "imports/min",
                "÷ import floor",
                "÷ request floor",
            ],
            out,
            title=f"dbsync --realistic, {rows:,} rows (AC 5 req/s, 100 imports/min, imports"
            " take 5 s; import floor ceil(rows/250)/100 min, request floor calls/5 s)",
        )
        print(
            "\nTargets: test <= 10 s and <= 10 calls; first run time / import floor <= 1.10.",
            flush=True,
        )
        record(f"dbsync --realistic ({rows:,} rows)", "; ".join(notes))
    finally:
        await hub.close()
        await store.close()


def main() -> None:
    """Build the table, start the sandbox, run twice, print figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, help="1,000,000; 100,000 with --realistic")
    ap.add_argument(
        "--realistic",
        action="store_true",
        help="ActiveCampaign's real limits on both sides (5 req/s, 100 imports/min, 5 s imports)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    ap.add_argument("--reuse", action="store_true", help="reuse an existing bench table")
    args = ap.parse_args()
    if args.rows is None:
        args.rows = 100_000 if args.realistic else 1_000_000
    if not args.reuse:
        t = time.perf_counter()
        make_table(args.rows)
        print(f"table: {args.rows:,} rows loaded in {time.perf_counter() - t:.1f} s", flush=True)
    print(f"mariadb --quick raw read: {raw_read_seconds():.1f} s", flush=True)
    plain: float | None = None
    try:
        if not args.realistic:
            # The plain script on a simulator of its own, so both start from an empty hub.
            alone, alone_port = start_sandbox("off")
            try:
                plain = plain_seconds(alone_port)
            finally:
                alone.kill()
                alone.wait()
        sandbox, port = start_sandbox("realistic" if args.realistic else "off")
        try:
            with tempfile.TemporaryDirectory() as state:
                if args.realistic:
                    asyncio.run(run_realistic(args.rows, port, Path(state)))
                else:
                    asyncio.run(run_bench(args.rows, port, Path(state), sandbox.pid, plain))
        finally:
            sandbox.kill()
            sandbox.wait()
    finally:
        if not args.keep:
            mariadb("-e", f"DROP DATABASE IF EXISTS {DB}")


def start_sandbox(mode: str) -> tuple[subprocess.Popen[str], int]:
    """The ActiveCampaign simulator in its own process; it and its port."""
    sandbox = subprocess.Popen(
        [sys.executable, "-c", SANDBOX_SCRIPT, TOKEN, mode], stdout=subprocess.PIPE, text=True
    )
    assert sandbox.stdout is not None
    port = int(sandbox.stdout.readline())
    # Keep reading its output: a full pipe would stall the sandbox mid-request.
    out = sandbox.stdout
    threading.Thread(target=lambda: [None for _ in out], daemon=True).start()
    return sandbox, port


def plain_seconds(port: int) -> float:
    """The plain script's time for the whole table (bench.plain_dbsync)."""
    from bench.plain_dbsync import run_plain

    dsn = {"host": "127.0.0.1", "port": 3306, "user": "root", "database": DB}
    wall, imports = asyncio.run(run_plain(port, TOKEN, dsn=dsn))
    print(f"plain script (pymysql + aiohttp, {imports:,} imports): {wall:.1f} s", flush=True)
    return wall


if __name__ == "__main__":
    main()

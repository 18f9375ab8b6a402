"""Benchmark 1: webhook intake of `syncd run` against a bare aiohttp handler, with wrk.

wrk posts ActiveCampaign ``update`` webhooks (a distinct contact id per request) with 32
connections for 20 s, first at a bare aiohttp handler in its own process (reads the body,
answers 200), then at `syncd run` on the SQLite store (synchronous=FULL) and on a fresh
MariaDB database. Flushes are effectively off (huge flush_size/interval), so only intake is
measured. After each syncd run the store is counted: every 2xx must be a committed change.

    .venv/bin/python -m bench.intake [--duration 20] [--connections 32] [--stores sqlite,mysql]

Needs Debian's ``wrk`` (``apt-get install -y wrk``). Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    RssSampler,
    cpu_seconds,
    drop_mysql_database,
    fresh_mysql_database,
    mariadb,
    record,
    store_config,
    table,
)

HOOK = "/webhooks/activecampaign/demo-webhook-token-0123456789"
MYSQL_DB = "syncd_bench_intake"

# Each wrk thread numbers its own requests; thread n uses ids n*10^8 + i (distinct overall).
LUA = r"""
local threads = {}
local counter = 0
function setup(thread)
  thread:set("tid", #threads + 1)
  thread:set("base", __BASE__)
  table.insert(threads, thread)
end
function request()
  counter = counter + 1
  local id = base + tid * 100000000 + counter
  local body = "type=update&date_time=2024-05-01T10%3A00%3A00-05%3A00&initiated_from=admin"
    .. "&contact%5Bid%5D=" .. id
    .. "&contact%5Bemail%5D=person" .. id .. "%40example.com"
    .. "&contact%5Bfirst_name%5D=Pat&contact%5Blast_name%5D=Load" .. id
    .. "&contact%5Bphone%5D=%2B15550100&contact%5Btags%5D=added-to-salesforce-contact"
  return wrk.format("POST", "__PATH__",
    {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end
function done(summary, latency, requests)
  io.write(string.format(
    "WRKJSON {\"requests\": %d, \"duration_us\": %d, \"non2xx\": %d, \"connect\": %d,"
    .. " \"read\": %d, \"write\": %d, \"timeout\": %d, \"p50_us\": %d, \"p90_us\": %d,"
    .. " \"p99_us\": %d, \"max_us\": %d}\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""

BARE = """
import sys
from aiohttp import web

async def hook(request):
    await request.read()
    return web.Response(text="ok")

app = web.Application()
app.router.add_post("/webhooks/activecampaign/{token}", hook)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


@dataclass(frozen=True)
class WrkResult:
    """What wrk reported for one target."""

    requests: int
    seconds: float
    non2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> int:
        """Requests answered 2xx/3xx (timeouts and socket errors are not responses)."""
        return self.requests - self.non2xx


def run_wrk(
    url: str, *, duration: float, connections: int, threads: int, base: int, tmp: Path
) -> WrkResult:
    """Run wrk once against `url` (the webhook path is fixed) and parse its summary."""
    script = tmp / f"hook-{base}.lua"
    script.write_text(LUA.replace("__BASE__", str(base)).replace("__PATH__", HOOK))
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{int(duration)}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(r"WRKJSON (\{.*\})", out)
    if m is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    d = json.loads(m.group(1))
    return WrkResult(
        requests=d["requests"],
        seconds=d["duration_us"] / 1e6,
        non2xx=d["non2xx"],
        socket_errors=d["connect"] + d["read"] + d["write"] + d["timeout"],
        p50_ms=d["p50_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
        max_ms=d["max_us"] / 1000,
    )


def wait_port(port: int, timeout: float = 20.0) -> None:
    """Block until something accepts connections on 127.0.0.1:`port`."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def bare_run(args: argparse.Namespace, tmp: Path) -> WrkResult:
    """wrk against the bare aiohttp handler in its own process."""
    from tests.e2e.daemon import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", BARE, str(port)])
    try:
        wait_port(port)
        run_wrk(
            f"http://127.0.0.1:{port}",
            duration=2,
            connections=args.connections,
            threads=args.threads,
            base=0,
            tmp=tmp,
        )  # warm-up
        return run_wrk(
            f"http://127.0.0.1:{port}",
            duration=args.duration,
            connections=args.connections,
            threads=args.threads,
            base=0,
            tmp=tmp,
        )
    finally:
        proc.terminate()
        proc.wait(10)


def count_inbound(store: str, state: Path) -> int:
    """Distinct inbound record keys in the queue."""
    sql = "SELECT COUNT(DISTINCT record_key) FROM queue_entries WHERE direction = 'inbound'"
    if store == "mysql":
        return int(mariadb("-e", sql, db=MYSQL_DB).strip())
    with sqlite3.connect(state / "syncd.sqlite3", timeout=30) as conn:
        return int(conn.execute(sql).fetchone()[0])


def syncd_run(
    args: argparse.Namespace, store: str, tmp: Path, sandboxes: object
) -> tuple[WrkResult, int, float, float]:
    """wrk against `syncd run`; (result, changes stored by the measured run, RSS, CPU s)."""
    from tests.e2e.daemon import BASE_CONFIG, start_daemon

    dsn = fresh_mysql_database(MYSQL_DB) if store == "mysql" else None
    cfg = (
        BASE_CONFIG.replace("drain_timeout = 10", "drain_timeout = 10\n" + store_config(store, dsn))
        + sandboxes.config_toml("activecampaign")  # type: ignore[attr-defined]
        + "\n[inbound]\nflush_size = 10000\nflush_interval = 86400\n"
        + "\n[outbound]\ninterval_hours = 24\n"
    )
    d = start_daemon(tmp, cfg, name=f"intake-{store}")
    try:
        d.wait_ready(timeout=60)
        # Paused inbound still queues: no flush competes with intake (a size flush would).
        d.request("POST", "/api/v1/sync/inbound/pause")
        url = d.base
        run_wrk(
            url, duration=2, connections=args.connections, threads=args.threads, base=0, tmp=tmp
        )  # warm-up: connections, caches, first pages of the tables
        state = tmp / f"intake-{store}-state"
        before = count_inbound(store, state)
        cpu0 = cpu_seconds(d.proc.pid)
        sampler = RssSampler(d.proc.pid)
        spy = None
        if args.profile:
            out = Path(args.profile) / f"intake-{store}.txt"
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "-p",
                    str(d.proc.pid),
                    "-f",
                    "raw",
                    "-o",
                    str(out),
                    "-d",
                    str(int(args.duration)),
                    "-s",
                    "--nonblocking",
                    "--rate",
                    "500",
                ],
                stdout=subprocess.DEVNULL,
            )
        res = run_wrk(
            url,
            duration=args.duration,
            connections=args.connections,
            threads=args.threads,
            base=1_000_000_000,
            tmp=tmp,
        )
        rss = sampler.stop()
        if spy is not None:
            spy.wait(30)
        cpu = cpu_seconds(d.proc.pid) - cpu0
        time.sleep(0.5)  # requests in flight when wrk stopped finish committing
        stored = count_inbound(store, state) - before
        return res, stored, rss, cpu
    finally:
        # SIGKILL: a drain would flush the whole buffer to the sandbox; it is committed anyway.
        d.kill()
        if store == "mysql":
            drop_mysql_database(MYSQL_DB)


def main() -> None:
    """Run the benchmark and print/record the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--stores", default="sqlite,mysql")
    p.add_argument("--profile", metavar="DIR", help="py-spy the daemon, collapsed stacks in DIR")
    args = p.parse_args()
    from syncd.sandbox.runner import SandboxThread

    sb = SandboxThread(("salesforce", "activecampaign"), rate_limits=False)
    rows = []
    figures = []
    try:
        with tempfile.TemporaryDirectory(prefix="syncd-bench-intake-") as t:
            tmp = Path(t)
            bare = bare_run(args, tmp)
            rows.append(
                [
                    "bare aiohttp",
                    bare.requests,
                    bare.rps,
                    "",
                    bare.p50_ms,
                    bare.p99_ms,
                    bare.max_ms,
                    bare.non2xx,
                    bare.socket_errors,
                    "",
                    "",
                    "",
                ]
            )
            figures.append(f"bare {bare.rps:,.0f} req/s p99 {bare.p99_ms:.1f} ms")
            for store in [s.strip() for s in args.stores.split(",") if s.strip()]:
                res, stored, rss, cpu = syncd_run(args, store, tmp, sb.set)
                ratio = res.rps / bare.rps if bare.rps else 0.0
                verdict = "ok" if stored >= res.ok else f"MISSING {res.ok - stored}"
                rows.append(
                    [
                        f"syncd {store}",
                        res.requests,
                        res.rps,
                        f"{ratio:.0%}",
                        res.p50_ms,
                        res.p99_ms,
                        res.max_ms,
                        res.non2xx,
                        res.socket_errors,
                        f"{stored} ({verdict})",
                        rss,
                        cpu,
                    ]
                )
                figures.append(
                    f"syncd/{store} {res.rps:,.0f} req/s = {ratio:.0%} of bare,"
                    f" p50 {res.p50_ms:.1f} ms p99 {res.p99_ms:.1f} ms,"
                    f" 2xx {res.ok} stored {stored} ({verdict}), peak RSS {rss:.0f} MB"
                )
    finally:
        sb.close()
    table(
        [
            "target",
            "requests",
            "req/s",
            "of bare",
            "p50 ms",
            "p99 ms",
            "max ms",
            "non-2xx",
            "sock err",
            "stored",
            "RSS MB",
            "CPU s",
        ],
        rows,
        title=f"webhook intake: wrk -c{args.connections} -t{args.threads} -d{args.duration:g}s"
        " (target: syncd >= 40% of bare, p99 <= 25 ms)",
    )
    record(
        f"intake (wrk -c{args.connections} -d{args.duration:g}s)"
        + (", py-spy attached" if args.profile else ""),
        "; ".join(figures),
    )


if __name__ == "__main__":
    main()

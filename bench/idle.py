"""Benchmark 4: what an idle daemon costs — CPU seconds and RSS over 60 s.

`syncd run` with both sides configured (simulators on loopback, seeded), pulls scheduled
every hour and the inbound buffer waiting on its interval, left alone for 60 s after it
settled (its first scheduled pulls, 5 s after start, have run). CPU comes from
/proc/PID/stat (user + system), RSS from /proc/PID/status. Targets: <= 0.5 s, <= 80 MB.

    .venv/bin/python -m bench.idle [--seconds 60] [--store sqlite|mysql]

Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import (
    RssSampler,
    cpu_seconds,
    drop_mysql_database,
    fresh_mysql_database,
    peak_rss_mb,
    record,
    rss_mb,
    start_bench_daemon,
    table,
)

MYSQL_DB = "syncd_bench_idle"
CONFIG = """
[inbound]
flush_interval = 600

[outbound]
interval_hours = 1
"""


def main() -> None:
    """Run the benchmark and print/record the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--settle", type=float, default=10.0, help="wait before measuring")
    p.add_argument("--store", choices=("sqlite", "mysql"), default="sqlite")
    args = p.parse_args()
    from syncd.sandbox.runner import SandboxThread

    sb = SandboxThread(("salesforce", "activecampaign"), seed=True)
    dsn = fresh_mysql_database(MYSQL_DB) if args.store == "mysql" else None
    try:
        with tempfile.TemporaryDirectory(prefix="syncd-bench-idle-") as t:
            d = start_bench_daemon(
                Path(t), sb.set, name="idle", store=args.store, dsn=dsn, extra=CONFIG
            )
            try:
                time.sleep(args.settle)
                pid = d.proc.pid
                status, body, _ = d.request("GET", "/api/v1/status")
                jobs = body.decode().count('"pull:') if status == 200 else 0
                cpu0, rss0 = cpu_seconds(pid), rss_mb(pid)
                sampler = RssSampler(pid, interval=0.5)
                time.sleep(args.seconds)
                peak = sampler.stop()
                cpu = cpu_seconds(pid) - cpu0
                rss1, hwm = rss_mb(pid), peak_rss_mb(pid)
            finally:
                d.kill()
    finally:
        sb.close()
        if args.store == "mysql":
            drop_mysql_database(MYSQL_DB)
    table(
        [
            "store",
            "seconds",
            "CPU s",
            "CPU %",
            "RSS start MB",
            "RSS end MB",
            "RSS max MB",
            "VmHWM MB",
            "pull jobs",
        ],
        [[args.store, args.seconds, cpu, 100 * cpu / args.seconds, rss0, rss1, peak, hwm, jobs]],
        title="idle daemon (targets: <= 0.5 CPU s per 60 s, RSS <= 80 MB)",
    )
    record(
        f"idle ({args.seconds:g} s, {args.store})",
        f"CPU {cpu:.2f} s ({100 * cpu / args.seconds:.2f} %), RSS {rss1:.0f} MB"
        f" (max {peak:.0f}, VmHWM {hwm:.0f} incl. startup), {jobs} pull jobs scheduled",
    )


if __name__ == "__main__":
    main()

"""Benchmark 3: one outbound pull of 100,000 changed Salesforce contacts into the hub.

The Salesforce simulator gets 100,000 new contacts (``bulk_insert_contacts``); a manual pull
of `syncd run` reads them and writes them to the ActiveCampaign simulator (bulk import, 250
a call) and, in a second run, to the HubSpot simulator (batch upsert, 100 a call). Rate
limits are off on both sides. Printed: records/s, API calls by endpoint, peak RSS of the
daemon (targets: >= 5,000 records/s, <= 150 MB).

    .venv/bin/python -m bench.outbound [--records 100000] [--hubs activecampaign,hubspot]
                                       [--store sqlite|mysql]

Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    QUIET_INBOUND,
    RssSampler,
    calls_between,
    cpu_seconds,
    drop_mysql_database,
    fresh_mysql_database,
    is_write,
    peak_rss_mb,
    record,
    sandbox_calls,
    start_bench_daemon,
    table,
)

MYSQL_DB = "syncd_bench_outbound"
CONFIG = """
[outbound]
interval_hours = 24

[hub.rate_limit]
requests = 1000000
per_seconds = 1

[hub.bulk_rate_limit]
requests = 1000000
per_seconds = 1

[sync.objects.lead]
selection = "none"
"""


def _own_cpu() -> float:
    """CPU seconds of this process: the simulators' thread (the main thread only waits)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def pull(d: Any, obj: str = "contact") -> tuple[dict[str, Any], float]:
    """A manual pull, waited for (retried while the scheduled one runs); (body, seconds)."""
    while True:
        started = time.perf_counter()
        status, body, _ = d.request("POST", f"/api/v1/pulls/{obj}?wait=true", timeout=3600)
        if status == 409:
            time.sleep(0.2)
            continue
        if status != 200:
            raise RuntimeError(f"pull answered {status}: {body[:300]!r}")
        return json.loads(body), time.perf_counter() - started


def run_hub(hub: str, args: argparse.Namespace) -> dict[str, Any]:
    """One pull of `args.records` contacts into `hub`; the figures."""
    from syncd.sandbox.runner import SandboxThread
    from syncd.sandbox.salesforce.seed import bulk_insert_contacts
    from syncd.sandbox.salesforce.soql import now_utc

    sb = SandboxThread(("salesforce", hub), rate_limits=False)
    sb.keep_data_out_of_collector()  # as `syncd sandbox` serves them
    sf, hs = sb.set.state("salesforce"), sb.set.state(hub)
    if hub == "activecampaign":
        hs.import_latency = 0.0  # imports complete at once, as rate limits are off too
    dsn = fresh_mysql_database(MYSQL_DB) if args.store == "mysql" else None
    try:
        with tempfile.TemporaryDirectory(prefix="syncd-bench-outbound-") as t:
            d = start_bench_daemon(
                Path(t),
                sb.set,
                name=f"outbound-{hub}",
                hub=hub,
                store=args.store,
                dsn=dsn,
                extra=QUIET_INBOUND + CONFIG,
            )
            try:
                pull(d)  # sets the all_new start: only contacts created after it sync
                time.sleep(6)  # the first scheduled pull (5 s after start) has run
                pull(d)
                inserted = time.perf_counter()
                sb.run(lambda: bulk_insert_contacts(sf, args.records, start=now_utc()))
                insert_s = time.perf_counter() - inserted
                sf0, hub0 = sandbox_calls(sf, sb), sandbox_calls(hs, sb)
                pid = d.proc.pid
                rss_before = peak_rss_mb(pid)
                cpu0 = cpu_seconds(pid)
                sim0 = _own_cpu()
                sampler = RssSampler(pid)
                spy = None
                if args.profile:
                    spy = subprocess.Popen(
                        [
                            str(Path(sys.executable).parent / "py-spy"),
                            "record",
                            "-p",
                            str(pid),
                            "-f",
                            "raw",
                            "-o",
                            str(Path(args.profile) / f"outbound-{hub}.txt"),
                            "-n",
                            "-s",
                        ],
                        stdout=subprocess.DEVNULL,
                    )
                body, seconds = pull(d)
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(30)
                sampled = sampler.stop()
                cpu = cpu_seconds(pid) - cpu0
                sim_cpu = _own_cpu() - sim0
                peak = max(peak_rss_mb(pid), sampled)
                sf_calls = calls_between(sf0, sandbox_calls(sf, sb))
                hub_calls = calls_between(hub0, sandbox_calls(hs, sb))
                in_hub = sb.run(lambda: len(getattr(hs, "contacts", {})))
            finally:
                d.kill()
    finally:
        sb.close()
        if args.store == "mysql":
            drop_mysql_database(MYSQL_DB)
    counts = body.get("counts", body)
    done = int(counts.get("processed", 0))
    return {
        "hub": hub,
        "records": args.records,
        "processed": done,
        "errors": counts.get("errors", 0),
        "seconds": seconds,
        "rate": done / seconds if seconds else 0.0,
        "cpu": cpu,
        "sim_cpu": sim_cpu,
        "rss_start": rss_before,
        "rss_peak": peak,
        "sf_calls": sf_calls,
        "hub_calls": hub_calls,
        "in_hub": in_hub,
        "insert_s": insert_s,
    }


def main() -> None:
    """Run the benchmark and print/record the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--hubs", default="activecampaign,hubspot")
    p.add_argument("--store", choices=("sqlite", "mysql"), default="sqlite")
    p.add_argument("--profile", metavar="DIR", help="py-spy the daemon, collapsed stacks in DIR")
    args = p.parse_args()
    results = [run_hub(h.strip(), args) for h in args.hubs.split(",") if h.strip()]
    table(
        [
            "hub",
            "processed",
            "errors",
            "seconds",
            "records/s",
            "daemon CPU s",
            "simulators CPU s",
            "RSS start MB",
            "peak RSS MB",
            "SF calls",
            "hub calls",
            "hub writes",
        ],
        [
            [
                r["hub"],
                r["processed"],
                r["errors"],
                r["seconds"],
                r["rate"],
                r["cpu"],
                r["sim_cpu"],
                r["rss_start"],
                r["rss_peak"],
                sum(r["sf_calls"].values()),
                sum(r["hub_calls"].values()),
                sum(n for k, n in r["hub_calls"].items() if is_write(k)),
            ]
            for r in results
        ],
        title=f"outbound pull of {args.records:,} Salesforce contacts ({args.store} store;"
        " targets >= 5,000 records/s, peak RSS <= 150 MB)",
    )
    for r in results:
        table(
            ["endpoint", "calls"],
            sorted({**r["sf_calls"], **r["hub_calls"]}.items()),
            title=f"calls during the {r['hub']} pull",
        )
    record(
        f"outbound ({args.records:,} contacts, {args.store})"
        + (", py-spy attached" if args.profile else ""),
        "; ".join(
            f"{r['hub']} {r['rate']:,.0f} records/s ({r['processed']:,} in {r['seconds']:.1f} s,"
            f" {r['errors']} errors), {sum(r['hub_calls'].values())} hub calls,"
            f" {sum(r['sf_calls'].values())} SF calls, peak RSS {r['rss_peak']:.0f} MB,"
            f" CPU daemon {r['cpu']:.0f} s / simulators {r['sim_cpu']:.0f} s"
            for r in results
        ),
    )


if __name__ == "__main__":
    main()

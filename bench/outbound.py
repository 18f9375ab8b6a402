"""Benchmark 3: one outbound pull of 100,000 changed Salesforce contacts into the hub.

The Salesforce simulator gets 100,000 new contacts (``bulk_insert_contacts``); a manual pull
of `syncd run` reads them and writes them to the ActiveCampaign simulator (bulk import, 250
a call) and, in a second run, to the HubSpot simulator (batch upsert, 100 a call). Rate
limits are off on both sides. Printed: records/s, API calls by endpoint, peak RSS of the
daemon (targets: >= 5,000 records/s, <= 150 MB).

``--realistic`` (10,000 records by default): the hubs' real limits on both sides — the
simulators as the vendors are (ActiveCampaign 5 requests/s, 100 bulk imports a minute, 5 s
per import; HubSpot 100 requests/10 s, 30 s search lag) and the daemon with no limit
settings, so the vendors' defaults. A first pull creates and links the 10,000 new contacts
(its time is printed); then a mapped field (LastName) changes on all of them in Salesforce
and a second pull writes the changes to the linked hub contacts. For that second pull:
wall time, hub write calls against the minimum (ActiveCampaign: ceil(n/250) bulk imports
keyed by current email plus ceil(n/100) email reads; HubSpot: ceil(n/100) batch updates),
the 429s the daemon received, and its time over the rate-limit floor (ActiveCampaign:
max(imports at 100 a minute, calls at 5 a second); HubSpot: calls at 10 a second).

    .venv/bin/python -m bench.outbound [--records N] [--hubs activecampaign,hubspot]
                                       [--store sqlite|mysql] [--realistic]

Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import itertools
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
    api_calls_by_endpoint,
    calls_between,
    cpu_seconds,
    drop_mysql_database,
    floor_ratio,
    fresh_mysql_database,
    is_write,
    peak_rss_mb,
    rate_limited_answers,
    record,
    sandbox_calls,
    start_bench_daemon,
    table,
)

MYSQL_DB = "syncd_bench_outbound"
CONFIG = """
[outbound]
interval_hours = 24

[sync.objects.lead]
selection = "none"
"""
# Limits off on syncd's side too; --realistic leaves them out: the vendors' defaults.
LIMITS_OFF = """
[hub.rate_limit]
requests = 1000000
per_seconds = 1

[hub.bulk_rate_limit]
requests = 1000000
per_seconds = 1
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


def daemon_metrics(d: Any) -> str:
    """The daemon's /metrics text."""
    status, body, _ = d.request("GET", "/metrics", timeout=30)
    return body.decode() if status == 200 else ""


def rate_limited(d: Any) -> int:
    """The 429s the daemon's clients have received so far."""
    return rate_limited_answers(daemon_metrics(d))


def change_contacts(sf: Any, ids: list[str]) -> None:
    """Change a mapped field (LastName) on each contact, as a user's edit would."""
    for i, rid in enumerate(ids):
        rec = sf.records["Contact"][rid]
        rec["LastName"] = f"Changed {i}"
        sf.touch(rec)


def changed_in_hub(hs: Any) -> int:
    """Hub contacts whose last name carries the change."""
    if hasattr(hs, "objects"):  # HubSpot
        return sum(
            1
            for o in hs.objects["contacts"].values()
            if str(o.properties.get("lastname") or "").startswith("Changed ")
        )
    return sum(1 for c in hs.contacts.values() if str(c.last_name or "").startswith("Changed "))


def realistic_update(d: Any, sb: Any, sf: Any, hs: Any, hub: str, ids: list[str]) -> dict[str, Any]:
    """Change every contact in Salesforce, pull again, and measure that pull against the
    hub's minimum calls and its rate-limit floor."""
    time.sleep(1.1)  # past the first pull's last SystemModstamp second
    sb.run(lambda: change_contacts(sf, ids))
    hub0, limited0 = sandbox_calls(hs, sb), rate_limited(d)
    purpose0 = api_calls_by_endpoint(daemon_metrics(d), hub)
    stamps0 = len(getattr(hs, "request_times", ()))
    began = time.time()
    body, seconds = pull(d)
    # ActiveCampaign's simulator stamps every request: the pull's stretches without one
    # (over 1 s) are time spent on something other than the rate limit.
    stamps = [began, *getattr(hs, "request_times", [])[stamps0:], time.time()]
    gaps = [b - a for a, b in itertools.pairwise(stamps) if b - a > 1.0]
    calls = calls_between(hub0, sandbox_calls(hs, sb))
    purposes = calls_between(purpose0, api_calls_by_endpoint(daemon_metrics(d), hub))
    limited = rate_limited(d) - limited0
    served = sum(calls.values()) - limited  # 429s do not count against the vendor's window
    n = len(ids)
    if hub == "activecampaign":
        imports = sum(v for k, v in calls.items() if k.endswith("/import/bulk_import"))
        writes = sum(v for k, v in calls.items() if is_write(k))
        minimum = -(-n // 250) + -(-n // 100)
        min_writes = -(-n // 250)
        floor = max(imports / 100 * 60, served / 5)
        floor_text = f"max({imports} imports at 100/min, {served} calls at 5/s)"
    else:
        writes = sum(v for k, v in calls.items() if is_write(k))
        minimum = min_writes = -(-n // 100)
        floor = served / 10
        floor_text = f"{served} calls at 10/s"
    counts = body.get("counts", body)
    return {
        "seconds": seconds,
        "processed": int(counts.get("processed", 0)),
        "errors": counts.get("errors", 0),
        "calls": calls,
        "served": served,
        "limited": limited,
        "writes": writes,
        "min_writes": min_writes,
        "minimum": minimum,
        "floor": floor,
        "floor_text": floor_text,
        "ratio": floor_ratio(seconds, floor),
        "changed": sb.run(lambda: changed_in_hub(hs)),
        "purposes": purposes,
        "idle": (len(gaps), sum(gaps)) if hub == "activecampaign" else None,
    }


def run_hub(hub: str, args: argparse.Namespace) -> dict[str, Any]:
    """One pull of `args.records` contacts into `hub`; the figures."""
    from syncd.sandbox.activecampaign.state import DEFAULT_IMPORT_LATENCY
    from syncd.sandbox.hubspot.state import SEARCH_LAG_DEFAULT
    from syncd.sandbox.runner import SandboxThread
    from syncd.sandbox.salesforce.seed import bulk_insert_contacts
    from syncd.sandbox.salesforce.soql import now_utc

    if args.realistic:  # the vendors' limits and delays, whatever SYNCD_SANDBOX_TIME_FACTOR is
        sb = SandboxThread(
            ("salesforce", hub),
            rate_limits=True,
            ac_import_latency=DEFAULT_IMPORT_LATENCY,
            hs_search_lag=SEARCH_LAG_DEFAULT,
        )
    else:
        sb = SandboxThread(("salesforce", hub), rate_limits=False)
    sb.keep_data_out_of_collector()  # as `syncd sandbox` serves them
    sf, hs = sb.set.state("salesforce"), sb.set.state(hub)
    if hub == "activecampaign" and not args.realistic:
        hs.import_latency = 0.0  # imports complete at once, as rate limits are off too
    update: dict[str, Any] = {}
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
                extra=QUIET_INBOUND + CONFIG + ("" if args.realistic else LIMITS_OFF),
            )
            try:
                pull(d)  # sets the all_new start: only contacts created after it sync
                time.sleep(6)  # the first scheduled pull (5 s after start) has run
                pull(d)
                inserted = time.perf_counter()
                ids = sb.run(lambda: bulk_insert_contacts(sf, args.records, start=now_utc()))
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
                limited0 = rate_limited(d) if args.realistic else 0
                body, seconds = pull(d)
                first_limited = rate_limited(d) - limited0 if args.realistic else 0
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
                if args.realistic:
                    update = realistic_update(d, sb, sf, hs, hub, ids)
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
        "update": update,
        "limited": first_limited,
    }


def report_realistic(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Print and record the second (all changed) pull of each hub."""
    rows = []
    for r in results:
        u = r["update"]
        rows.append(
            [
                r["hub"],
                u["processed"],
                u["errors"],
                u["changed"],
                u["seconds"],
                u["served"],
                u["limited"],
                f"{u['writes']} / {u['min_writes']}",
                f"{u['served']} / {u['minimum']}",
                u["floor"],
                u["ratio"],
            ]
        )
    table(
        [
            "hub",
            "processed",
            "errors",
            "changed in hub",
            "seconds",
            "calls",
            "429s",
            "writes / min",
            "calls / min",
            "floor s",
            "time ÷ floor",
        ],
        rows,
        title=f"second pull: {args.records:,} linked contacts changed (real limits)",
    )
    for r in results:
        if r["update"]["idle"]:
            n, total = r["update"]["idle"]
            print(
                f"\n{r['hub']} update pull: {n} stretches over 1 s without a hub request,"
                f" {total:.1f} s in all"
            )
        table(
            ["endpoint", "calls"],
            sorted(r["update"]["calls"].items()),
            title=f"hub calls during the {r['hub']} update pull (429s included)",
        )
        table(
            ["syncd endpoint group", "calls"],
            sorted(r["update"]["purposes"].items()),
            title=f"the same calls by syncd's endpoint groups ({r['hub']}, its /metrics)",
        )
    record(
        f"outbound --realistic ({args.records:,} changed linked contacts, {args.store})",
        "; ".join(
            f"{r['hub']}: first pull (create + link) {r['seconds']:.1f} s,"
            f" {sum(r['hub_calls'].values())} hub calls ({r['limited']} answered 429),"
            f" {r['processed']:,} processed, {r['errors']} errors; update pull {u['seconds']:.1f} s"
            f" ({u['processed']:,} processed, {u['errors']} errors, {u['changed']:,} changed in"
            f" hub), writes {u['writes']} vs min {u['min_writes']}, calls {u['served']} vs min"
            f" {u['minimum']}, {u['limited']} answered 429, floor {u['floor']:.1f} s"
            f" ({u['floor_text']}), time / floor {u['ratio']}; calls by syncd endpoint: "
            + ", ".join(f"{k} {v}" for k, v in sorted(u["purposes"].items()))
            + (
                f"; {u['idle'][0]} stretches over 1 s without a hub request,"
                f" {u['idle'][1]:.1f} s in all"
                if u["idle"]
                else ""
            )
            for r in results
            for u in [r["update"]]
        ),
    )


def main() -> None:
    """Run the benchmark and print/record the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, help="100,000; 10,000 with --realistic")
    p.add_argument("--hubs", default="activecampaign,hubspot")
    p.add_argument("--store", choices=("sqlite", "mysql"), default="sqlite")
    p.add_argument("--profile", metavar="DIR", help="py-spy the daemon, collapsed stacks in DIR")
    p.add_argument(
        "--realistic",
        action="store_true",
        help="the hubs' real limits; then a second pull of the same contacts, all changed",
    )
    args = p.parse_args()
    if args.records is None:
        args.records = 10_000 if args.realistic else 100_000
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
        + (
            " real limits: first pull, new contacts)"
            if args.realistic
            else " targets >= 5,000 records/s, peak RSS <= 150 MB)"
        ),
    )
    if args.realistic:
        report_realistic(results, args)
        return
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

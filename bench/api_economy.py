"""Benchmark 2: API economy of the inbound flush against the Salesforce simulator.

10,000 ActiveCampaign webhooks over 1,000 distinct records (800 contacts, 200 leads; ten
edits each) reach `syncd run`, then one flush writes them to Salesforce. Printed: write calls
per object against the minimum ``ceil(distinct / 200)``, and the ratio (target <= 1.05);
the reads the flush makes on each side (Salesforce: the current values and the email match,
target one query per 200 records; ActiveCampaign: the contacts' current values, one call per
100, plus one per contact for the mapped custom field `company`, which the v3 API reads one
contact at a time). Then each record gets one more webhook that changes only an unmapped
field: the flush after it should cost 0 Salesforce calls.

    .venv/bin/python -m bench.api_economy [--records 1000] [--edits 10]

Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

from bench.common import (
    NO_PULLS,
    QUIET_INBOUND,
    calls_between,
    is_write,
    record,
    sandbox_calls,
    start_bench_daemon,
    table,
)

HOOK = "/webhooks/activecampaign/demo-webhook-token-0123456789"
LEAD_MAPPING = """
[sync.objects.lead.mapping]
email = "Email"
firstName = "FirstName"
lastName = "LastName"
company = "Company"
"""


def hub_values(cid: int, edit: int, leads_from: int, unmapped: str = "") -> dict[str, Any]:
    """What a person leaves contact `cid` holding in ActiveCampaign after edit n."""
    values: dict[str, Any] = {
        "email": f"economy{cid}@example.com",
        "firstName": f"Pat{edit}",
        "lastName": f"Economy{cid}",
    }
    if cid >= leads_from:
        values["company"] = f"Company {cid % 37}"
    if unmapped:
        values["favourite_colour"] = unmapped  # not mapped to Salesforce
    return values


def form(cid: int, edit: int, leads_from: int, *, unmapped: str = "") -> bytes:
    """One `update` webhook; edit n changes the first name (the final edit's values stay)."""
    lead = cid >= leads_from
    fields = {
        "type": "update",
        "contact[id]": str(cid),
        "contact[email]": f"economy{cid}@example.com",
        "contact[first_name]": f"Pat{edit}",
        "contact[last_name]": f"Economy{cid}",
        "contact[tags]": "added-to-salesforce-lead" if lead else "added-to-salesforce-contact",
    }
    if lead:
        fields["contact[fields][company]"] = f"Company {cid % 37}"
    if unmapped:
        fields["contact[fields][favourite_colour]"] = unmapped  # not mapped to Salesforce
    return urllib.parse.urlencode(fields).encode()


async def post_all(base: str, bodies: list[bytes], concurrency: int = 32) -> dict[int, int]:
    """POST the webhooks with `concurrency` connections; status code counts."""
    import aiohttp

    statuses: dict[int, int] = {}
    queue = list(reversed(bodies))
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    async def worker(session: aiohttp.ClientSession) -> None:
        while queue:
            body = queue.pop()
            async with session.post(base + HOOK, data=body, headers=headers) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return statuses


def flush(d: Any) -> tuple[dict[str, Any], float]:
    """A manual flush, waited for; (its counts, seconds)."""
    started = time.perf_counter()
    status, body, _ = d.request("POST", "/api/v1/flush?wait=true", timeout=600)
    if status != 200:
        raise RuntimeError(f"flush answered {status}: {body[:300]!r}")
    return json.loads(body), time.perf_counter() - started


def main() -> None:
    """Run the benchmark and print/record the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=1000)
    p.add_argument("--edits", type=int, default=10)
    p.add_argument("--lead-share", type=float, default=0.2)
    args = p.parse_args()
    from syncd.sandbox.activecampaign.ui import edit_contact
    from syncd.sandbox.runner import SandboxThread

    sb = SandboxThread(("salesforce", "activecampaign"), rate_limits=False)
    sf, ac = sb.set.state("salesforce"), sb.set.state("activecampaign")
    ac.import_latency = 0.0  # imports complete at once, as rate limits are off too

    def edit_hub(edit: int, unmapped: str = "") -> None:
        # The webhooks describe these edits: the hub holds the last one when syncd reads it.
        for c in range(1, n + 1):
            tag = "added-to-salesforce-lead" if c >= leads_from else "added-to-salesforce-contact"
            edit_contact(ac, c, hub_values(c, edit, leads_from, unmapped), tags=[tag])

    n, edits = args.records, args.edits
    leads_from = 1 + round(n * (1 - args.lead_share))
    distinct = {"Contact": leads_from - 1, "Lead": n - leads_from + 1}
    try:
        with tempfile.TemporaryDirectory(prefix="syncd-bench-economy-") as t:
            d = start_bench_daemon(
                Path(t), sb.set, name="economy", extra=QUIET_INBOUND + NO_PULLS + LEAD_MAPPING
            )
            try:
                # The first scheduled pulls run 5 s after start: not this benchmark's calls.
                time.sleep(8)
                # Edits interleave across records, as a busy hub would send them.
                sb.run(edit_hub, edits - 1)
                bodies = [form(c, e, leads_from) for e in range(edits) for c in range(1, n + 1)]
                started = time.perf_counter()
                codes = asyncio.run(post_all(d.base, bodies))
                send_s = time.perf_counter() - started
                before, ac_before = sandbox_calls(sf, sb), sandbox_calls(ac, sb)
                seq0 = sb.run(lambda: len(sf.ledger))
                counts1, flush1_s = flush(d)
                mid, ac_mid = sandbox_calls(sf, sb), sandbox_calls(ac, sb)
                hub_reads = calls_between(ac_before, ac_mid)
                written = sb.run(lambda: [e.object for e in sf.ledger[seq0:]])
                first = calls_between(before, mid)
                # Same mapped values again, only an unmapped field differs.
                sb.run(edit_hub, edits - 1, "teal")
                again = [form(c, edits - 1, leads_from, unmapped="teal") for c in range(1, n + 1)]
                codes2 = asyncio.run(post_all(d.base, again))
                counts2, flush2_s = flush(d)
                second = calls_between(mid, sandbox_calls(sf, sb))
            finally:
                d.kill()
    finally:
        sb.close()

    def writes_of(calls: dict[str, int]) -> int:
        return sum(c for k, c in calls.items() if is_write(k))

    def reads_of(calls: dict[str, int]) -> int:
        return sum(c for k, c in calls.items() if not is_write(k) and "oauth2" not in k)

    def auth_of(calls: dict[str, int]) -> int:
        # Token refreshes come with the access token's lifetime, not with the changes.
        return sum(c for k, c in calls.items() if "oauth2" in k)

    # The simulator counts calls per endpoint template ({type}), so records written per
    # object come from its ledger; each call carries one object, so total == sum of minima
    # means every object hit its minimum.
    rows: list[list[Any]] = []
    total_min = sum(math.ceil(v / 200) for v in distinct.values())
    total_writes = writes_of(first)
    for obj, k in distinct.items():
        rows.append([obj, k, written.count(obj), math.ceil(k / 200), "", ""])
    ratio = total_writes / total_min if total_min else 0.0
    rows.append(["all", n, len(written), total_min, total_writes, f"{ratio:.2f}"])
    table(
        ["object", "distinct", "records written", "min write calls", "write calls", "ratio"],
        rows,
        title=f"API economy: {len(bodies):,} webhooks over {n:,} records, one flush"
        " (target ratio <= 1.05)",
    )
    table(
        ["endpoint", "calls (flush 1)", "calls (unchanged flush)"],
        [[k, first.get(k, 0), second.get(k, 0)] for k in sorted(set(first) | set(second))],
        title="Salesforce calls by endpoint",
    )
    table(
        ["endpoint", "calls (flush 1)", "per"],
        [[k, c, f"{n / c:,.0f} records" if c else ""] for k, c in sorted(hub_reads.items())],
        title=f"ActiveCampaign reads of flush 1 ({n:,} contacts, {distinct['Lead']} with the"
        " custom field)",
    )
    print(
        f"\nwebhooks: {codes} in {send_s:.1f} s; flush 1: {counts1} in {flush1_s:.1f} s"
        f"\nunchanged: webhooks {codes2}; flush 2: {counts2} in {flush2_s:.1f} s;"
        f" calls {sum(second.values())} (writes {writes_of(second)}, reads"
        f" {reads_of(second)}, token requests {auth_of(second)})"
    )
    record(
        f"api_economy ({len(bodies):,} changes / {n:,} records)",
        f"write calls {total_writes} vs min {total_min} = ratio {ratio:.2f}"
        f" ({distinct['Contact']} contacts + {distinct['Lead']} leads);"
        f" Salesforce reads {reads_of(first)} (min {math.ceil(n / 200)});"
        f" ActiveCampaign reads {sum(hub_reads.values())};"
        f" unchanged re-send: {writes_of(second) + reads_of(second)}"
        f" calls ({auth_of(second)} token requests apart);"
        f" flush {flush1_s:.1f} s",
    )


if __name__ == "__main__":
    main()

"""``syncd demo``: the simulators, seeded data, the real daemon and a webhook generator, live.

Everything runs in this process on loopback: Salesforce, ActiveCampaign and HubSpot
simulators, the daemon with short intervals (flush every 10 s, pulls every minute) on the
SQLite store in a temporary directory, and a generator of hub webhooks and CRM changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import shutil
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from syncd.cli.client import exit_if_taken
from syncd.config import Settings, load_settings
from syncd.daemon import Daemon
from syncd.logging import configure_logging
from syncd.model import Direction, EntryStatus, ObjectType, RunTrigger
from syncd.sandbox.activecampaign.ui import ac_custom_values, edit_contact
from syncd.sandbox.runner import SandboxSet, start_sandboxes
from syncd.store.protocols import StateStore
from syncd.store.types import LinkFilter
from syncd.sync.component import SyncEngine
from syncd.sync.merge import same
from syncd.wiring import component_factories, route_installers

AC_WEBHOOK_TOKEN = "demo-webhook-token-0123456789"


def demo_config(sandboxes: SandboxSet, *, port: int, state: Path, token: str, hub: str) -> str:
    """The daemon config the demo runs with."""
    return (
        f"""
[daemon]
listen = "127.0.0.1:{port}"
state_dir = "{state}"
admin_token = "{token}"
log_format = "json"
drain_timeout = 20
lease_seconds = 60
"""
        + sandboxes.config_toml(hub)
        + """
[inbound]
flush_interval = 10
flush_size = 100

[outbound]
interval_hours = 1
interval_seconds_override = 60
overlap_seconds = 5

# The demo pushes every seeded Salesforce contact with an email to the hub at the first pull.
[sync.objects.contact]
selection = "criteria"
criteria = { field = "Email", op = "is_not_null" }

# Salesforce requires Company on a new lead: the simulated account has the custom field
# "company" (%COMPANY%), as `syncd check-config --online` asks.
[sync.objects.lead]
mapping = { email = "Email", firstName = "FirstName", lastName = "LastName", company = "Company" }
required = ["lastName", "company"]
"""
    )


async def _generate(
    sandboxes: SandboxSet, base: str, hub: str, stop: asyncio.Event, rng: random.Random
) -> None:
    """Hub webhooks (tagged and untagged contacts) and new/converted CRM records."""
    sf = sandboxes.state("salesforce")
    ac = sandboxes.state("activecampaign")
    url = f"{base}/webhooks/activecampaign/{AC_WEBHOOK_TOKEN}"
    tags = ["added-to-salesforce-contact"] * 6 + ["added-to-salesforce-lead", "newsletter"]
    n = 0
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            n += 1
            cid = rng.randint(1, 1500)
            first = rng.choice(["Ann", "Bo", "Cy", "Di", "Ed"])
            tag = tags[cid % len(tags)]
            form = {
                "type": "update",
                "contact[id]": str(cid),
                "contact[email]": f"hub{cid}@example.com",
                "contact[first_name]": first,
                "contact[last_name]": f"Hub{cid}",
                "contact[tags]": tag,
            }
            if hub == "activecampaign":
                # A person edits the contact in ActiveCampaign, which sends its webhook.
                values = {"email": f"hub{cid}@example.com", "firstName": first}
                values["lastName"] = f"Hub{cid}"
                if "lead" in tag:
                    values["company"] = rng.choice(["Acme", "Globex", "Initech"])
                edit_contact(ac, cid, values, tags=[tag])
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.post(
                        url,
                        data=urllib.parse.urlencode(form),
                        headers={"Content-Type": "application/x-www-form-urlencoded"},
                    ) as resp:
                        await resp.read()
            if n % 25 == 0:
                sf.insert(
                    "Contact",
                    {"FirstName": "New", "LastName": f"Crm{n}", "Email": f"crm{n}@example.com"},
                )
            if n % 60 == 0:
                sf.insert(
                    "Lead",
                    {"LastName": f"Lead{n}", "Company": "Acme", "Email": f"lead{n}@example.com"},
                )
            await asyncio.sleep(0.1)


async def _summary(daemon: Daemon, sandboxes: SandboxSet, out: TextIO, stop: asyncio.Event) -> None:
    # On a terminal one line is rewritten in place; in a pipe a line every 5 s.
    tty = out.isatty()
    while not stop.is_set():
        line = await _line(daemon, sandboxes)
        out.write("\r" + line.ljust(110) if tty else line + "\n")
        out.flush()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0 if tty else 5.0):
                await stop.wait()


async def _line(daemon: Daemon, sandboxes: SandboxSet) -> str:
    try:
        counts = await daemon.store.counts()
    except Exception:  # the store may still be opening
        counts = {}

    def c(direction: Direction, status: EntryStatus) -> int:
        return counts.get((direction, status), 0)

    received = sum(n for (d, _), n in counts.items() if d is Direction.INBOUND)
    errors = c(Direction.INBOUND, EntryStatus.ERROR) + c(Direction.OUTBOUND, EntryStatus.ERROR)
    calls = {v: sum(rs.state.requests.values()) for v, rs in sandboxes.running.items()}
    return (
        f"received {received} | pending {c(Direction.INBOUND, EntryStatus.PENDING)}"
        f" | synced in {c(Direction.INBOUND, EntryStatus.PROCESSED)}"
        f" out {c(Direction.OUTBOUND, EntryStatus.PROCESSED)}"
        f" | errors {errors}"
        f" | excluded {c(Direction.INBOUND, EntryStatus.EXCLUDED)}"
        f" | API calls SF {calls.get('salesforce', 0)} AC {calls.get('activecampaign', 0)}"
    )


async def run_demo(*, duration: float | None, port: int, hub: str = "activecampaign") -> int:
    """Run the demo until Ctrl-C or `duration` seconds; print a report; exit code."""
    rng = random.Random(7)
    state = Path(tempfile.mkdtemp(prefix="syncd-demo-"))
    out = sys.stdout
    out.write("starting simulators (seeding a few thousand records) ...\n")
    # Only the simulators the demo uses: Salesforce and its hub.
    sandboxes = await start_sandboxes(("salesforce", hub), seed=True)
    token = secrets.token_urlsafe(16)
    cfg = state / "syncd.toml"
    cfg.write_text(demo_config(sandboxes, port=port, state=state, token=token, hub=hub))
    settings = load_settings(cfg)
    log_file = (state / "syncd.log").open("w", encoding="utf-8")
    configure_logging("info", "json", settings.secret_values(), stream=log_file)
    daemon = Daemon(
        settings, cfg, components=component_factories(settings), installers=route_installers()
    )
    base = f"http://127.0.0.1:{port}"
    out.write(
        f"daemon      {base}  (log: {state / 'syncd.log'})\n"
        f"metrics     {base}/metrics\n"
        f"admin API   {base}/api/v1/status   (Authorization: Bearer {token})\n"
        f"simulators  " + "  ".join(f"{v}={rs.url}" for v, rs in sandboxes.running.items()) + "\n"
        f"config      {cfg}\n"
        "Ctrl-C stops the demo (the daemon drains its buffer first).\n\n"
    )
    stop = asyncio.Event()
    run = asyncio.ensure_future(daemon.run())
    gen = asyncio.ensure_future(_generate(sandboxes, base, hub, stop, rng))
    summary = asyncio.ensure_future(_summary(daemon, sandboxes, out, stop))
    started = time.monotonic()
    try:
        while not run.done():
            if duration is not None and time.monotonic() - started >= duration:
                break
            await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(gen, summary, return_exceptions=True)
        if not run.done():
            out.write("\rfinal sync: a flush, then a pull of contacts and leads ...\n")
            await _final_sync(daemon)
            daemon.request_stop()
        code = await run
    finally:
        stop.set()
        await asyncio.gather(gen, summary, return_exceptions=True)
    out.write("\r" + (await _report(daemon, sandboxes)) + "\n")
    await daemon.store.close()
    await sandboxes.close()
    log_file.close()
    # Nothing of a demo outlives it (its store, log and config live here).
    shutil.rmtree(state, ignore_errors=True)
    return code


async def _final_sync(daemon: Daemon) -> None:
    """Flush what waits, then pull both people objects: what the report compares."""
    for comp in daemon.started_components:
        if isinstance(comp, SyncEngine):
            with contextlib.suppress(Exception):
                await comp.flusher.flush(RunTrigger.MANUAL)
            for obj in (ObjectType.CONTACT, ObjectType.LEAD):
                with contextlib.suppress(Exception):
                    await comp.pull_now(obj)


async def _report(daemon: Daemon, sandboxes: SandboxSet) -> str:
    from syncd.store import create_store

    store = create_store(daemon.settings.daemon)
    await store.open()
    try:
        counts = await store.counts()
        runs = await store.list_runs(limit=1000)
        differ, linked = await divergence(store, daemon.settings, sandboxes)
    finally:
        await store.close()
    lines = ["", "demo report", "-----------"]
    for (direction, status), n in sorted(counts.items()):
        lines.append(f"{direction.value:9} {status.value:11} {n}")
    kinds: dict[str, int] = {}
    for r in runs:
        kinds[f"{r.kind.value}/{r.trigger.value}"] = (
            kinds.get(f"{r.kind.value}/{r.trigger.value}", 0) + 1
        )
    lines.append("runs      " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    lines.append(
        f"divergence {differ} of {linked} linked contacts and leads differ between"
        " Salesforce and the hub after the final sync (expected 0)"
    )
    for vendor, rs in sandboxes.running.items():
        writes = len(rs.state.ledger)
        lines.append(
            f"{vendor:14} API calls {sum(rs.state.requests.values())}, writes applied {writes}"
        )
    return "\n".join(lines)


async def divergence(
    store: StateStore, settings: Settings, sandboxes: SandboxSet
) -> tuple[int, int]:
    """(records whose mapped fields differ between the sides, linked records compared),
    read straight from the simulators: contacts and leads linked to an ActiveCampaign
    contact."""
    if "activecampaign" not in sandboxes.running:
        return 0, 0
    sf, ac = sandboxes.state("salesforce"), sandboxes.state("activecampaign")
    differ = linked = 0
    for obj, sobject in ((ObjectType.CONTACT, "Contact"), (ObjectType.LEAD, "Lead")):
        mapping = settings.sync.objects[obj].mapping
        after: int | None = None
        while True:
            links = await store.list_links(LinkFilter(object=obj), after_id=after, limit=1000)
            if not links:
                break
            after = links[-1].id
            for link in links:
                crm = sf.records[sobject].get(link.crm_id or "")
                hub = ac.contacts.get(int(link.hub_id)) if link.hub_id else None
                if crm is None or hub is None or crm.get("IsDeleted") or hub.deleted:
                    continue
                linked += 1
                values = {**hub.to_json(), **ac_custom_values(ac, hub)}
                if any(not same(values.get(h), crm.get(c)) for h, c in mapping.items()):
                    differ += 1
    return differ, linked


def main_args(args: Any) -> int:
    """Entry for ``syncd demo``."""
    exit_if_taken("127.0.0.1", args.port)
    return asyncio.run(run_demo(duration=args.duration, port=args.port, hub=args.hub))

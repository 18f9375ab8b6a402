"""Deterministic sample data for the ActiveCampaign simulator."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from syncd.model import SyncTag
from syncd.sandbox.activecampaign.state import ActiveCampaignSandbox

FIRST = (
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Edsger",
    "Barbara",
    "Ken",
    "Margaret",
    "Dennis",
    "Frances",
)
LAST = ("Lovelace", "Turing", "Hopper", "Torvalds", "Dijkstra", "Liskov", "Thompson", "Hamilton")
CUSTOM_FIELDS = (
    ("Company", "COMPANY", "text"),
    ("Lead Source", "LEAD_SOURCE", "dropdown"),
    ("Salesforce Id", "SALESFORCE_ID", "text"),
)


def contact_rows(
    n: int, *, seed: int = 42, start: int = 0, base_ts: float = 1.7e9
) -> Iterator[dict[str, Any]]:
    """Rows for `ActiveCampaignSandbox.bulk_load`: stable emails and spread-out dates."""
    rng = random.Random(seed)
    for i in range(start, start + n):
        cdate = base_ts + i * 37 + rng.randint(0, 30)
        yield {
            "email": f"contact{i:07d}@example.com",
            "firstName": rng.choice(FIRST),
            "lastName": rng.choice(LAST),
            "phone": f"+1555{rng.randint(0, 9_999_999):07d}",
            "cdate": cdate,
            "udate": cdate + rng.randint(0, 86_400 * 30),
        }


def seed_activecampaign(
    sandbox: ActiveCampaignSandbox, contacts: int = 100, seed: int = 42
) -> None:
    """Fill an empty account: fields, lists, sync tags, campaigns, contacts, accounts, deals."""
    rng = random.Random(seed)
    for title, perstag, ftype in CUSTOM_FIELDS:
        fid = sandbox.next_id("field")
        sandbox.fields[fid] = {"title": title, "perstag": perstag, "type": ftype, "isrequired": "0"}
    for name in ("Newsletter", "Customers", "Imported"):
        lid = sandbox.next_id("list")
        sandbox.lists[lid] = {"name": name, "stringid": name.lower(), "sender_reminder": ""}
    tag_ids = [sandbox.create_tag(str(t)) for t in SyncTag]
    for lid in sandbox.lists:
        cid = sandbox.next_id("campaign")
        sandbox.campaigns[cid] = {"name": f"Broadcast {cid}", "list": lid, "sdate": 1.7e9 + cid}
    sandbox.bulk_load(contact_rows(contacts, seed=seed))
    for c in list(sandbox.contacts.values()):
        udate = c.udate
        c.field_values[1] = rng.choice(("Acme", "Globex", "Initech", ""))
        if rng.random() < 0.3:
            sandbox.add_contact_tag(c.id, rng.choice(tag_ids))
        if rng.random() < 0.5:
            status = 2 if rng.random() < 0.2 else 1
            sandbox.set_membership(c.id, 1, status, keep_unsub=False)
        c.udate = udate  # seeding must not move the dates the generator chose
    for i in range(min(10, max(1, contacts // 10))):
        aid = sandbox.next_id("account")
        sandbox.accounts[aid] = {"name": f"Account {i}", "accountUrl": "", "_c": 1.7e9, "_u": 1.7e9}
        did = sandbox.next_id("deal")
        sandbox.deals[did] = {
            "title": f"Deal {i}",
            "value": str(1000 * (i + 1)),
            "currency": "usd",
            "account": str(aid),
            "stage": "1",
            "_c": 1.7e9,
            "_u": 1.7e9,
        }
    sandbox.touch()

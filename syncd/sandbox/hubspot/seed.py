"""Seed data for the HubSpot simulator: a realistic portal, and a fast bulk loader.

`seed_hubspot` makes companies and contacts (with emails, sync tags and a primary company)
through the same code paths the API uses. `bulk_load` skips validation and the ledger so
benchmarks can load hundreds of thousands of records quickly, with controlled timestamps.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

from syncd.sandbox.hubspot.objects import HsObject
from syncd.sandbox.hubspot.state import (
    MODIFIED_PROPERTY,
    HubSpotSandbox,
    iso_ms,
)

_FIRST = (
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Barbara",
    "Ken",
    "Edsger",
    "Margaret",
    "Donald",
    "Frances",
)
_LAST = ("Lovelace", "Hopper", "Turing", "Torvalds", "Liskov", "Thompson", "Dijkstra", "Hamilton")
_WORDS = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Tyrell")
_TAGS = ("added-to-salesforce-contact", "added-to-salesforce-lead", "created-from-salesforce-lead")
DAY_MS = 86_400_000


def seed_hubspot(
    sandbox: HubSpotSandbox, contacts: int = 100, companies: int = 10, seed: int = 42
) -> dict[str, list[str]]:
    """Create `companies` companies and `contacts` contacts; returns their ids by type."""
    rng = random.Random(seed)
    for tag in _TAGS:
        sandbox.ensure_option("contacts", sandbox.tag_property, tag)
    company_ids: list[str] = []
    for i in range(companies):
        name = f"{rng.choice(_WORDS)} {i}"
        rec = sandbox.create(
            "companies",
            {"name": name, "domain": f"{name.lower().replace(' ', '')}.example.com"},
            endpoint="seed",
        )
        company_ids.append(rec.id)
    contact_ids: list[str] = []
    for i in range(contacts):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        props: dict[str, Any] = {
            "email": f"{first.lower()}.{last.lower()}.{i}@example.com",
            "firstname": first,
            "lastname": last,
            "phone": f"+1555{rng.randrange(10**6, 10**7)}",
        }
        tags = [t for t in _TAGS if rng.random() < 0.2]
        if tags:
            props[sandbox.tag_property] = ";".join(tags)
        rec = sandbox.create("contacts", props, endpoint="seed")
        contact_ids.append(rec.id)
        if company_ids:
            sandbox.associate(rec.id, rng.choice(company_ids), primary=True)
    sandbox.ledger.clear()  # seeding is not traffic a test should see
    sandbox.index.settle()  # seeded data is old: search has long found it
    return {"contacts": contact_ids, "companies": company_ids}


def bulk_load(
    sandbox: HubSpotSandbox,
    obj: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    start_ms: int | None = None,
    step_ms: int = 1,
    same_every: int = 1,
) -> list[str]:
    """Insert rows directly (no validation, no ledger); timestamps rise by `step_ms` every
    `same_every` rows from `start_ms` (default: 30 days ago), so tests can make ties."""
    start = sandbox.now_ms() - 30 * DAY_MS if start_ms is None else start_ms
    modified = MODIFIED_PROPERTY[obj]
    store = sandbox.objects[obj]
    ids: list[str] = []
    for i, row in enumerate(rows):
        ms = start + (i // max(same_every, 1)) * step_ms
        rid = sandbox.new_id()
        props: dict[str, str | None] = {k: (None if v is None else str(v)) for k, v in row.items()}
        props["hs_object_id"] = rid
        stamp = iso_ms(ms)
        props["createdate"] = stamp
        props[modified] = stamp
        store[rid] = HsObject(rid, props, ms, ms)
        email = props.get("email")
        if obj == "contacts" and email:
            sandbox.email_index[email.lower()] = rid
        ids.append(rid)
    return ids

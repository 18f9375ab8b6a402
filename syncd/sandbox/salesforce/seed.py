"""Deterministic demo data and a fast bulk loader for the Salesforce simulator."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from syncd.sandbox.salesforce.soql import now_utc
from syncd.sandbox.salesforce.state import SalesforceSandbox

FIRST = (
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Ken",
    "Linus",
    "Margaret",
    "Dennis",
    "Frances",
)
LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Torvalds", "Hamilton",
        "Ritchie", "Allen")  # fmt: skip
COMPANIES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell")
STAGES = ("Prospecting", "Qualification", "Proposal/Price Quote", "Closed Won", "Closed Lost")


def seed_salesforce(
    sandbox: SalesforceSandbox,
    *,
    contacts: int = 50,
    leads: int = 50,
    converted_fraction: float = 0.2,
    accounts: int = 10,
    opportunities: int = 10,
    seed: int = 42,
) -> None:
    """Fill the org with reproducible records; a share of the leads is converted."""
    rng = random.Random(seed)
    total = contacts + leads + accounts + opportunities
    start = now_utc() - timedelta(days=3)
    step = timedelta(days=2) / max(total, 1)
    clock = [start]

    def tick() -> datetime:
        clock[0] += step
        return clock[0].replace(microsecond=clock[0].microsecond // 1000 * 1000)

    account_ids = [
        sandbox.insert(
            "Account",
            {"Name": f"{rng.choice(COMPANIES)} {i}", "Industry": "Technology"},
            at=tick(),
        )["Id"]
        for i in range(accounts)
    ]
    for i in range(contacts):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        sandbox.insert(
            "Contact",
            {
                "FirstName": first,
                "LastName": last,
                "Email": f"{first}.{last}.c{i}@example.com".lower(),
                "Phone": f"+1555{rng.randrange(10**6, 10**7)}",
                "AccountId": rng.choice(account_ids) if account_ids else None,
            },
            at=tick(),
        )
    for i in range(opportunities):
        sandbox.insert(
            "Opportunity",
            {
                "Name": f"Deal {i}",
                "Amount": float(rng.randrange(1, 500) * 100),
                "StageName": rng.choice(STAGES),
                "CloseDate": (start + timedelta(days=rng.randrange(1, 90))).date(),
                "AccountId": rng.choice(account_ids) if account_ids else None,
            },
            at=tick(),
        )
    lead_ids = []
    for i in range(leads):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        lead_ids.append(
            sandbox.insert(
                "Lead",
                {
                    "FirstName": first,
                    "LastName": last,
                    "Company": rng.choice(COMPANIES),
                    "Email": f"{first}.{last}.l{i}@example.com".lower(),
                    "LeadSource": "Web",
                },
                at=tick(),
            )["Id"]
        )
    for lead_id in rng.sample(lead_ids, round(len(lead_ids) * converted_fraction)):
        sandbox.convert_lead(lead_id, at=tick())


def bulk_insert_contacts(
    sandbox: SalesforceSandbox,
    count: int,
    *,
    start: datetime | None = None,
    step: timedelta = timedelta(milliseconds=1),
    prefix: str = "bulk",
) -> list[str]:
    """Insert `count` contacts fast (benchmarks), `step` apart; their SystemModstamp is kept
    to the second (as Salesforce keeps it), so many share one."""
    at = start or (now_utc() - step * (count + 1))
    ids: list[str] = []
    for i in range(count):
        at = at + step
        rec = sandbox.insert(
            "Contact",
            {"FirstName": "Bulk", "LastName": f"Contact {i}", "Email": f"{prefix}{i}@example.com"},
            at=at,
        )
        ids.append(rec["Id"])
    return ids

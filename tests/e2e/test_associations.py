"""HubSpot associations follow Salesforce's relations: a contact's and a deal's primary
company is the hub company linked to its Salesforce account, re-pointed when it changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.sandbox.salesforce.soql import now_utc
from tests.e2e.env import Env

ACCOUNTS = (
    "\n[inbound]\nflush_size = 1000\nflush_interval = 600\n"
    '[sync.objects.contact]\nselection = "criteria"\n'
    'criteria = { field = "Email", op = "is_not_null" }\n'
    '[sync.objects.account]\nenabled = true\nselection = "criteria"\n'
    'criteria = { field = "Name", op = "is_not_null" }\n'
    '[sync.objects.opportunity]\nenabled = true\nselection = "criteria"\n'
    'criteria = { field = "Name", op = "is_not_null" }\n'
)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path, ("salesforce", "hubspot"))
    try:
        yield e
    finally:
        e.close()


def pull(d: Any, obj: str) -> dict[str, int]:
    status, body = d.json("POST", f"/api/v1/pulls/{obj}?wait=true", timeout=120)
    assert status == 200, body
    return dict(body["counts"])


def test_primary_companies_follow_the_salesforce_accounts(env: Env) -> None:
    d = env.start(ACCOUNTS, hub="hubspot")
    hs = env.sb.set.state("hubspot")

    def seed() -> tuple[str, str]:
        acme = env.sf.insert("Account", {"Name": "Acme"})["Id"]
        globex = env.sf.insert("Account", {"Name": "Globex"})["Id"]
        contact = env.sf.insert(
            "Contact", {"LastName": "Lee", "Email": "lee@acme.io", "AccountId": acme}
        )["Id"]
        env.sf.insert(
            "Opportunity",
            {
                "Name": "Big deal",
                "StageName": "Prospecting",
                "CloseDate": "2026-12-31",
                "AccountId": acme,
            },
        )
        return globex, contact

    globex, contact = env.sb.run(seed)
    assert pull(d, "account")["processed"] == 2
    counts = pull(d, "contact")
    assert counts["processed"] == 1 and counts["associated"] == 1
    assert pull(d, "opportunity")["associated"] == 1

    def companies() -> dict[str, str | None]:
        by_name = {r.properties.get("name"): r.id for r in hs.objects["companies"].values()}
        person = hs.by_email("lee@acme.io")
        [big] = [r for r in hs.objects["deals"].values()]
        return {
            "contact": hs.primary_company(person.id),
            "deal": hs.primary_company(big.id),
            "acme": by_name["Acme"],
            "globex": by_name["Globex"],
        }

    got = env.sb.run(companies)
    assert got["contact"] == got["acme"] and got["deal"] == got["acme"]
    # Nothing changed: no association call at the next pull.
    assert pull(d, "contact")["associated"] == 0

    def move() -> None:
        rec = env.sf.records["Contact"][contact]
        rec["AccountId"] = globex
        rec["SystemModstamp"] = now_utc()

    env.sb.run(move)
    assert pull(d, "contact")["associated"] == 1
    got = env.sb.run(companies)
    assert got["contact"] == got["globex"]
    assert env.sb.run(lambda: (hs.by_email("lee@acme.io").id, got["acme"]) not in hs.associations)

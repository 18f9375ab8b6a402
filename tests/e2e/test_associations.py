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


def company_event(d: Any, kind: str, company_id: str, prop: str = "name") -> int:
    from tests.e2e.test_deletions import post_hubspot_events

    event = {
        "eventId": 1,
        "subscriptionType": f"company.{kind}",
        "objectId": int(company_id),
        "propertyName": prop,
        "propertyValue": "ignored: the daemon reads the company",
        "occurredAt": 1,
    }
    return post_hubspot_events(d, [event])


def test_companies_sync_both_ways(env: Env) -> None:
    d = env.start(ACCOUNTS, hub="hubspot")
    hs = env.sb.set.state("hubspot")
    acme = env.sb.run(lambda: env.sf.insert("Account", {"Name": "Acme", "Website": "acme.io"}))
    assert pull(d, "account")["processed"] == 1
    [company] = env.sb.run(lambda: list(hs.objects["companies"].values()))

    # A person renames the company in HubSpot; its webhook reaches the daemon.
    env.sb.run(lambda: hs.update("companies", company, {"name": "Acme Corp"}, endpoint="ui"))
    assert company_event(d, "propertyChange", company.id) == 200
    status, body = d.json("POST", "/api/v1/flush?wait=true")
    assert status == 200 and body["counts"]["processed"] == 1, body
    account = env.sb.run(lambda: dict(env.sf.records["Account"][acme["Id"]]))
    assert account["Name"] == "Acme Corp" and account["Website"] == "acme.io"

    # A company created in HubSpot becomes a Salesforce account, linked.
    created = env.sb.run(
        lambda: hs.create("companies", {"name": "Initech", "domain": "initech.io"}, endpoint="ui")
    )
    assert company_event(d, "creation", created.id) == 200
    status, body = d.json("POST", "/api/v1/flush?wait=true")
    assert status == 200 and body["counts"]["processed"] == 1, body
    names = {a["Name"]: a for a in env.sb.run(lambda: list(env.sf.live("Account")))}
    assert names["Initech"]["Website"] == "initech.io"
    status, body = d.json("GET", "/api/v1/records?object=account&q=initech")
    assert status == 200 and body["records"][0]["crm_id"] == names["Initech"]["Id"]

"""HubSpot as the hub, end to end: signed webhooks in, contacts re-read, written to Salesforce."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.sandbox.runner import HS_CLIENT_SECRET
from syncd.vendors.hubspot.signature import compute_signature_v3
from tests.e2e.daemon import DaemonProcess
from tests.e2e.env import Env, queue_counts, sf_records, wait_until

QUIET = "\n[inbound]\nflush_size = 1000\nflush_interval = 600\n"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path, ("salesforce", "hubspot"))
    try:
        yield e
    finally:
        e.close()


def start(env: Env) -> DaemonProcess:
    return env.start(QUIET, hub="hubspot")


def post_events(
    d: DaemonProcess,
    events: list[dict[str, object]],
    *,
    secret: str = HS_CLIENT_SECRET,
    age_ms: int = 0,
    tamper: bool = False,
) -> int:
    body = json.dumps(events).encode()
    ts = str(int(time.time() * 1000) - age_ms)
    uri = f"{d.base}/webhooks/hubspot"
    sig = compute_signature_v3(secret, "POST", uri, body, ts)
    if tamper:
        body = body.replace(b"contact", b"CONTACT", 1)
    status, _, _ = d.request(
        "POST",
        "/webhooks/hubspot",
        body,
        headers={
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": sig,
            "X-HubSpot-Request-Timestamp": ts,
        },
    )
    return status


def hs_contact(env: Env, email: str, tags: str) -> str:
    def make() -> str:
        props = {"email": email, "firstname": "Hana", "lastname": "Spot", "syncd_sync_tags": tags}
        for t in tags.split(";"):
            if t:
                env.sb.set.state("hubspot").ensure_option("contacts", "syncd_sync_tags", t)
        return str(env.sb.set.state("hubspot").create("contacts", props, endpoint="seed").id)

    return str(env.sb.run(make))


def test_signed_event_is_reread_and_written_to_salesforce(env: Env) -> None:
    d = start(env)
    cid = hs_contact(env, "hana@example.com", "added-to-salesforce-contact")
    event = {
        "eventId": 1,
        "subscriptionType": "contact.propertyChange",
        "objectId": int(cid),
        "propertyName": "firstname",
        "propertyValue": "Hana",
        "occurredAt": 1,
    }
    assert post_events(d, [event]) == 200
    status, body = d.json("POST", "/api/v1/flush?wait=true")
    assert status == 200 and body["counts"]["processed"] == 1, body
    [contact] = sf_records(env, "Contact")
    assert contact["Email"] == "hana@example.com" and contact["LastName"] == "Spot"
    assert contact["Syncd_Hub_Id__c"] == cid


def test_forged_stale_or_tampered_events_are_rejected_and_nothing_stored(env: Env) -> None:
    d = start(env)
    event = {"eventId": 2, "subscriptionType": "contact.creation", "objectId": 77, "occurredAt": 1}
    assert post_events(d, [event], secret="not-the-secret") == 401
    assert post_events(d, [event], age_ms=6 * 60 * 1000) == 401
    assert post_events(d, [event], tamper=True) == 401
    assert queue_counts(d) == {}


def test_untagged_hubspot_contact_is_excluded(env: Env) -> None:
    d = start(env)
    cid = hs_contact(env, "plain@example.com", "")
    assert (
        post_events(
            d,
            [
                {
                    "eventId": 3,
                    "subscriptionType": "contact.creation",
                    "objectId": int(cid),
                    "occurredAt": 1,
                }
            ],
        )
        == 200
    )
    d.json("POST", "/api/v1/flush?wait=true")
    assert queue_counts(d) == {"excluded": 1}
    assert sf_records(env, "Contact") == []


POLL = "\n[inbound]\nflush_size = 1\nflush_interval = 600\npoll_interval = 1\n"


def test_polling_fallback_takes_a_change_hubspot_search_indexed_late(env: Env) -> None:
    """HubSpot's search finds an update up to a minute late and a create within seconds.
    A poll that runs between the two sees the newer create, not the older update; resuming
    at the create's time, the next poll would never see the update. The overlap re-reads it.

    The lag is 6 s here (a create 1.2 s), longer than the test clock's default 3 s, so that
    a slow machine still writes the create to Salesforce before the update is found."""
    hs = env.sb.set.state("hubspot")
    cid = hs_contact(env, "early@example.com", "added-to-salesforce-contact")
    time.sleep(0.05)
    # A newer one: the polls resume past the first contact's time, not on it.
    hs_contact(env, "newer@example.com", "added-to-salesforce-contact")
    env.sb.run(hs.index.settle)  # old contacts, long found by search
    env.sb.run(lambda: hs.apply_faults({"search_lag": 6.0}))
    d = env.start(POLL, hub="hubspot")

    def sf_first_name(email: str) -> str | None:
        rows = [r for r in sf_records(env, "Contact") if r["Email"] == email]
        return str(rows[0]["FirstName"]) if rows else None

    wait_until(lambda: sf_first_name("newer@example.com") == "Hana", what="first poll")
    assert sf_first_name("early@example.com") == "Hana"

    def edit() -> None:
        hs.update("contacts", hs.objects["contacts"][cid], {"firstname": "Late"}, endpoint="x")

    def create() -> None:
        hs.create(
            "contacts",
            {
                "email": "later@example.com",
                "lastname": "Soon",
                "syncd_sync_tags": "added-to-salesforce-contact",
            },
            endpoint="create",
        )

    env.sb.run(edit)
    time.sleep(0.05)  # the create is strictly newer than the update
    env.sb.run(create)
    # Search finds the create before the update: a poll takes the newer contact first.
    wait_until(lambda: sf_first_name("later@example.com") is not None, what="the create")
    assert sf_first_name("early@example.com") == "Hana"
    wait_until(
        lambda: sf_first_name("early@example.com") == "Late",
        timeout=20,
        what="the update search indexed late",
    )
    _, st = d.json("GET", "/api/v1/status")
    assert st["queue"]["inbound"].get("failed", 0) == 0, st

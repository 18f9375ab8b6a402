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
from tests.e2e.env import Env, queue_counts, sf_records

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

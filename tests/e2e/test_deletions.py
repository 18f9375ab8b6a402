"""Deletions on either side, seen for real: recorded on the link, not synced after, deleted on
the other side only when `sync.propagate_deletes` says so, and restored on request."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncd.sandbox.salesforce.soql import now_utc
from tests.e2e.env import Env, ac_webhook, sf_records

QUIET = (
    "\n[inbound]\nflush_size = 1000\nflush_interval = 600\n"
    '[sync.objects.contact]\nselection = "criteria"\n'
    'criteria = { field = "Email", op = "is_not_null" }\n'
)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.close()


@pytest.fixture
def hs_env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path, ("salesforce", "hubspot"))
    try:
        yield e
    finally:
        e.close()


def pull(d: Any) -> dict[str, int]:
    status, body = d.json("POST", "/api/v1/pulls/contact?wait=true", timeout=120)
    assert status == 200, body
    return dict(body["counts"])


def flush(d: Any) -> dict[str, int]:
    status, body = d.json("POST", "/api/v1/flush?wait=true")
    assert status == 200, body
    return dict(body["counts"])


def link_of(d: Any, email: str) -> dict[str, Any]:
    status, body = d.json("GET", f"/api/v1/records?object=contact&q={email}")
    assert status == 200, body
    [link] = body["records"]
    return dict(link)


def linked_contact(env: Env, d: Any, email: str) -> str:
    rec = env.sb.run(
        lambda: env.sf.insert("Contact", {"LastName": "Gone", "FirstName": "Al", "Email": email})
    )
    assert pull(d)["processed"] >= 1
    return str(rec["Id"])


def sf_delete(env: Env, rid: str, ago: timedelta | None = None) -> None:
    """A person deletes the record in Salesforce (`ago`: that long ago)."""
    env.sb.run(lambda: env.sf.delete("Contact", rid, at=now_utc() - ago if ago else None))


def restore(d: Any, to: str, *extra: str) -> str:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "syncd",
            "restore-deleted",
            "--object",
            "contact",
            "--to",
            to,
            "--config",
            str(d.config),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_salesforce_deletion_is_recorded_left_alone_and_restored(env: Env) -> None:
    d = env.start(QUIET)
    rid = linked_contact(env, d, "gone@x.io")
    hub_id = int(env.sb.run(lambda: env.ac.by_email["gone@x.io"]))
    sf_delete(env, rid)
    assert pull(d)["deleted"] == 1
    link = link_of(d, "gone@x.io")
    assert link["deleted_side"] == "crm" and link["deleted_at"]
    # Nothing is deleted in the hub (propagate_deletes is off) ...
    assert env.sb.run(lambda: env.ac.live_contact(hub_id)) is not None
    # ... and a hub change of it is not sent to Salesforce: it says why.
    assert ac_webhook(env, d, hub_id, email="gone@x.io", last="Gone", first="Changed")[0] == 200
    assert flush(d)["excluded"] == 1
    _, body = d.json("GET", "/api/v1/queue?status=excluded")
    _, entry = d.json("GET", f"/api/v1/queue/{body['entries'][0]['id']}")
    assert "deleted in Salesforce" in json.dumps(entry)
    assert not [c for c in sf_records(env, "Contact") if c["Email"] == "gone@x.io"]
    assert "1 contact records deleted in the crm would be restored" in restore(
        d, "crm", "--dry-run"
    )
    assert "restored 1 of 1" in restore(d, "crm")
    [back] = [c for c in sf_records(env, "Contact") if c["Email"] == "gone@x.io"]
    assert back["FirstName"] == "Changed" and back["Id"] != rid  # from the hub's current values
    link = link_of(d, "gone@x.io")
    assert link["deleted_side"] is None and link["crm_id"] == back["Id"]


def test_an_activecampaign_deletion_is_seen_at_the_next_read(env: Env) -> None:
    d = env.start(QUIET)
    rid = linked_contact(env, d, "acgone@x.io")
    hub_id = int(env.sb.run(lambda: env.ac.by_email["acgone@x.io"]))
    env.sb.run(lambda: env.ac.delete_contact(env.ac.contacts[hub_id]))

    def crm_edit() -> None:
        env.sf.records["Contact"][rid]["FirstName"] = "Later"
        env.sf.records["Contact"][rid]["SystemModstamp"] = now_utc()

    env.sb.run(crm_edit)
    counts = pull(d)
    assert counts["excluded"] == 1 and counts["processed"] == 0
    link = link_of(d, "acgone@x.io")
    assert link["deleted_side"] == "hub"
    assert not env.sb.run(lambda: env.ac.contact_by_email("acgone@x.io"))  # not re-created
    assert "restored 1 of 1" in restore(d, "hub")
    back = env.sb.run(lambda: env.ac.contact_by_email("acgone@x.io"))
    assert back is not None and back.first_name == "Later"


def test_propagated_deletes_remove_the_other_side(env: Env) -> None:
    d = env.start(QUIET + "[sync]\npropagate_deletes = true\n")
    rid = linked_contact(env, d, "both@x.io")
    hub_id = int(env.sb.run(lambda: env.ac.by_email["both@x.io"]))
    sf_delete(env, rid)
    assert pull(d)["deleted"] == 1
    assert env.sb.run(lambda: env.ac.live_contact(hub_id)) is None
    # Both sides gone: a restore re-creates from the values they last agreed on.
    assert "restored 1 of 1" in restore(d, "crm")
    [back] = [c for c in sf_records(env, "Contact") if c["Email"] == "both@x.io"]
    assert back["LastName"] == "Gone" and back["FirstName"] == "Al"


def test_a_deletion_older_than_salesforces_window_is_found_by_checking_each_link(
    env: Env,
) -> None:
    d = env.start(QUIET)
    rid = linked_contact(env, d, "old@x.io")
    keep = linked_contact(env, d, "kept@x.io")
    d.stop()
    # syncd was away 20 days: Salesforce lists deletions of the last 15 only.
    db = sqlite3.connect(d.config.parent / f"{d.config.stem}-state" / "syncd.sqlite3")
    long_ago = (datetime.now(UTC) - timedelta(days=20)).isoformat()
    with db:
        db.execute(
            "UPDATE cursors SET cursor_value = ? WHERE name = 'deleted:contact'", (long_ago,)
        )
    db.close()
    sf_delete(env, rid, ago=timedelta(days=16))
    d = env.start(QUIET, name=d.config.stem, port=d.port)
    assert pull(d)["deleted"] == 1
    assert link_of(d, "old@x.io")["deleted_side"] == "crm"
    assert link_of(d, "kept@x.io")["deleted_side"] is None
    assert keep


def test_a_hubspot_deletion_webhook_marks_the_link(hs_env: Env) -> None:
    env = hs_env
    d = env.start(QUIET, hub="hubspot")
    linked_contact(env, d, "hsgone@x.io")
    hs = env.sb.set.state("hubspot")
    hub_id = str(env.sb.run(lambda: hs.by_email("hsgone@x.io").id))
    env.sb.run(lambda: hs.archive("contacts", hub_id))
    body = [
        {
            "eventId": 9,
            "subscriptionType": "contact.deletion",
            "objectId": int(hub_id),
            "occurredAt": int(time.time() * 1000),
        }
    ]
    assert post_hubspot_events(d, body) == 200
    counts = flush(d)
    assert counts["excluded"] == 1
    link = link_of(d, "hsgone@x.io")
    assert link["deleted_side"] == "hub"
    assert [c for c in sf_records(env, "Contact") if c["Email"] == "hsgone@x.io"]


def post_hubspot_events(d: Any, events: list[dict[str, Any]]) -> int:
    from syncd.sandbox.runner import HS_CLIENT_SECRET
    from syncd.vendors.hubspot.signature import compute_signature_v3

    raw = json.dumps(events).encode()
    ts = str(int(time.time() * 1000))
    sig = compute_signature_v3(HS_CLIENT_SECRET, "POST", f"{d.base}/webhooks/hubspot", raw, ts)
    status, _, _ = d.request(
        "POST",
        "/webhooks/hubspot",
        raw,
        headers={
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": sig,
            "X-HubSpot-Request-Timestamp": ts,
        },
    )
    return status

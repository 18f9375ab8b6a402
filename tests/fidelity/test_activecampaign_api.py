"""The ActiveCampaign simulator driven with plain `requests`, as an operator would drive AC.

Every call syncd makes and the common ones someone tries against `syncd sandbox`: contact
CRUD, contact/sync, the email/email_like/search filters with paging, lists, fieldValues,
bulk import with ``import/info`` and its statuses, the rate limits and the error bodies.
Shapes are AC's documented ones (pages cited next to each test).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from syncd.sandbox.activecampaign.app import create_activecampaign_app
from syncd.sandbox.activecampaign.seed import seed_activecampaign
from syncd.sandbox.activecampaign.state import ActiveCampaignSandbox
from syncd.sandbox.common import bound_port, serve
from syncd.sandbox.runner import AC_TOKEN, SandboxThread

AC_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
DENIED = {"message": "You are not authorized to access this file"}
STATUSES = {False, "waiting", "claimed", "active", "completed", "failed", "interrupted"}


class Ac:
    """An AC account on loopback and a `requests` session holding its token."""

    def __init__(self, *, rate_limit: tuple[int, float] | None, import_limits: bool) -> None:
        self.thread = SandboxThread(())
        self.sb = ActiveCampaignSandbox()  # imports take AC's time, scaled (tests/timing.py)
        self.thread.run(seed_activecampaign, self.sb, 30)
        app = create_activecampaign_app(
            self.sb, api_token=AC_TOKEN, rate_limit=rate_limit, import_limits=import_limits
        )
        self.runner = self.thread.call(serve(app))
        self.base = f"http://127.0.0.1:{bound_port(self.runner)}/api/3"
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.headers["Api-Token"] = AC_TOKEN

    def __call__(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.http.request(method, self.base + path, timeout=10, **kw)

    def wait_import(self, batch_id: str) -> tuple[dict[str, Any], list[Any]]:
        """Poll import/info until the import ended; its last answer and every status seen."""
        seen: list[Any] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = self("GET", "/import/info", params={"batchId": batch_id}).json()
            seen.append(info["status"])
            if info["status"] in ("completed", "failed", "interrupted"):
                return info, seen
            time.sleep(0.01)
        raise AssertionError(f"import {batch_id} never ended: {seen[-5:]}")

    def close(self) -> None:
        self.http.close()
        self.thread.call(self.runner.cleanup())
        self.thread.close()


@pytest.fixture
def ac() -> Iterator[Ac]:
    # The per-second limit is off here so that these tests do not wait on it; it has its
    # own tests below (test_rate_limit_*), as do the bulk import limits.
    a = Ac(rate_limit=None, import_limits=True)
    yield a
    a.close()


def test_contact_crud(ac: Ac) -> None:
    """https://developers.activecampaign.com/reference/create-a-new-contact and siblings."""
    r = ac("POST", "/contacts", json={"contact": {"email": "crud@example.com", "firstName": "C"}})
    assert r.status_code == 201
    contact = r.json()["contact"]
    cid = contact["id"]
    assert isinstance(cid, str) and AC_DATETIME.match(contact["cdate"])
    assert contact["links"]["fieldValues"] == f"/api/3/contacts/{cid}/fieldValues"
    got = ac("GET", f"/contacts/{cid}").json()
    assert got["contact"]["firstName"] == "C"
    assert set(got) >= {"contactTags", "contactLists", "fieldValues", "contact"}
    r = ac("PUT", f"/contacts/{cid}", json={"contact": {"lastName": "Renamed"}})
    assert r.status_code == 200 and r.json()["contact"]["lastName"] == "Renamed"
    assert ac("DELETE", f"/contacts/{cid}").json() == {}
    r = ac("GET", f"/contacts/{cid}")
    assert (r.status_code, r.json()) == (
        404,
        {"message": f"No Result found for Subscriber with id {cid}"},
    )


def test_contact_sync_creates_then_updates(ac: Ac) -> None:
    body = {"contact": {"email": "Sync@Example.com", "fieldValues": [{"field": "1", "value": "X"}]}}
    first = ac("POST", "/contact/sync", json=body)
    second = ac("POST", "/contact/sync", json={"contact": {"email": "sync@example.com"}})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["contact"]["id"] == second.json()["contact"]["id"]
    assert first.json()["fieldValues"][0]["value"] == "X"


def test_email_email_like_and_search_filters_page(ac: Ac) -> None:
    """https://developers.activecampaign.com/reference/list-all-contacts: ``email`` is exact,
    ``email_like`` a part of the email, ``search`` a part of the names, phone or email."""
    exact = ac("GET", "/contacts", params={"email": "CONTACT0000003@example.com"}).json()
    assert [c["email"] for c in exact["contacts"]] == ["contact0000003@example.com"]
    like = ac("GET", "/contacts", params={"email_like": "contact000001"}).json()
    assert like["meta"]["total"] == "10"
    assert all("contact000001" in c["email"] for c in like["contacts"])
    pages = [
        ac(
            "GET", "/contacts", params={"email_like": "contact000001", "limit": 4, "offset": o}
        ).json()
        for o in (0, 4, 8)
    ]
    assert [len(p["contacts"]) for p in pages] == [4, 4, 2]
    ids = [c["id"] for p in pages for c in p["contacts"]]
    assert ids == [c["id"] for c in like["contacts"]] and len(set(ids)) == 10
    last = ac.sb.contacts[7].last_name
    found = ac("GET", "/contacts", params={"search": last.lower()}).json()
    assert found["contacts"] and all(c["lastName"] == last for c in found["contacts"])
    assert found["meta"]["total"] == str(len(found["contacts"]))
    assert ac("GET", "/contacts", params={"search": "no-such-person"}).json()["contacts"] == []


def test_lists_create_read_and_subscribe(ac: Ac) -> None:
    """https://developers.activecampaign.com/reference/create-new-list: name, stringid,
    sender_url and sender_reminder are required."""
    body = {
        "list": {
            "name": "Fidelity",
            "stringid": "fidelity",
            "sender_url": "https://example.com",
            "sender_reminder": "You signed up on example.com",
        }
    }
    r = ac("POST", "/lists", json=body)
    assert r.status_code == 201
    made = r.json()["list"]
    assert made["name"] == "Fidelity" and isinstance(made["id"], str)
    assert AC_DATETIME.match(made["cdate"])
    assert ac("GET", f"/lists/{made['id']}").json()["list"]["stringid"] == "fidelity"
    missing = ac("POST", "/lists", json={"list": {"name": "No URL", "stringid": "x"}})
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["source"]["pointer"] == "/data/attributes/sender_url"
    r = ac(
        "POST",
        "/contactLists",
        json={"contactList": {"list": made["id"], "contact": "3", "status": 1}},
    )
    assert r.status_code == 200 and r.json()["contactList"]["status"] == "1"
    members = ac("GET", "/contacts", params={"listid": made["id"]}).json()
    assert [c["id"] for c in members["contacts"]] == ["3"]


def test_field_values(ac: Ac) -> None:
    """https://developers.activecampaign.com/reference/create-fieldvalue."""
    r = ac("POST", "/fieldValues", json={"fieldValue": {"contact": 4, "field": 3, "value": "S1"}})
    assert r.status_code == 200
    fv = r.json()["fieldValue"]
    assert (fv["contact"], fv["field"], fv["value"]) == ("4", "3", "S1")
    assert r.json()["contacts"][0]["id"] == "4"
    r = ac("PUT", f"/fieldValues/{fv['id']}", json={"fieldValue": {"value": "S2"}})
    assert r.json()["fieldValue"]["value"] == "S2"
    assert ac("GET", f"/fieldValues/{fv['id']}").json()["fieldValue"]["value"] == "S2"
    listed = ac("GET", "/fieldValues", params={"filters[fieldid]": 3}).json()
    assert [(v["contact"], v["value"]) for v in listed["fieldValues"]] == [("4", "S2")]
    assert listed["meta"]["total"] == "1"
    own = ac("GET", "/contacts/4/fieldValues").json()["fieldValues"]
    assert {(v["field"], v["value"]) for v in own} >= {("3", "S2")}
    r = ac("POST", "/fieldValues", json={"fieldValue": {"contact": 4, "field": 99, "value": "x"}})
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "related_missing"


def test_bulk_import_reports_statuses_and_only_created_contacts(ac: Ac) -> None:
    """https://developers.activecampaign.com/reference/bulk-import-status-info: the import
    runs in the background, ``success`` holds the ids of the contacts it *created* (updated
    ones are not listed, no order is promised) and ``failure`` the rejected emails."""
    ac.sb.faults.fail_emails = {"refused@example.com"}
    rows = [{"email": f"bulk{i}@example.com", "first_name": "B"} for i in range(40)]
    rows += [{"email": "contact0000000@example.com", "last_name": "Updated"}]  # contact 1
    rows += [{"email": "refused@example.com"}]
    r = ac("POST", "/import/bulk_import", json={"contacts": rows})
    assert r.status_code == 200
    body = r.json()
    assert body["success"] == 1 and body["queued_contacts"] == 42
    first = ac("GET", "/import/info", params={"batchId": body["batchId"]}).json()
    assert first["status"] in (False, "waiting", "claimed", "active")  # not done at once
    info, seen = ac.wait_import(body["batchId"])
    assert set(seen) <= STATUSES and info["status"] == "completed"
    created = {str(ac.sb.by_email[f"bulk{i}@example.com"]) for i in range(40)}
    assert set(info["success"]) == created and len(info["success"]) == 40
    assert "1" not in info["success"]  # contact 1 was updated, not created
    assert info["failure"] == ["refused@example.com"]
    assert ac.sb.contacts[1].last_name == "Updated"


@pytest.mark.parametrize("ending", ["failed", "interrupted"])
def test_bulk_import_can_fail_or_be_interrupted(ac: Ac, ending: str) -> None:
    faults = ac.base.removesuffix("/api/3") + "/_sandbox/faults"
    r = ac.http.post(faults, json={"import_outcome": ending, "import_outcome_next": 1})
    assert r.json() == {"ok": True}
    rows = [{"email": f"{ending}{i}@example.com"} for i in range(10)]
    batch = ac("POST", "/import/bulk_import", json={"contacts": rows}).json()["batchId"]
    info, _ = ac.wait_import(batch)
    assert info["status"] == ending
    applied = sum(1 for i in range(10) if f"{ending}{i}@example.com" in ac.sb.by_email)
    assert applied == (0 if ending == "failed" else 5)
    assert len(info["success"]) == applied


def test_bulk_import_errors(ac: Ac) -> None:
    """https://developers.activecampaign.com/reference/bulk-import-contacts: at most 250
    contacts a request, each with a valid email; ``import/info`` needs a batchId."""
    r = ac("POST", "/import/bulk_import", json={"contacts": [{"email": "x"}] * 251})
    assert r.status_code == 400 and r.json()["success"] == 0
    r = ac("POST", "/import/bulk_import", json={"contacts": [{"email": "ok@x.io"}, {}]})
    assert r.status_code == 400 and r.json()["failureReasons"][0]["index"] == 1
    r = ac("GET", "/import/info")
    assert (r.status_code, r.json()) == (
        400,
        {"success": 0, "message": "'batchId' is a required field."},
    )
    assert ac("GET", "/import/info", params={"batchId": "nope"}).status_code == 404


def test_bulk_import_limit_is_100_a_minute(ac: Ac) -> None:
    """Requests with several contacts: 100 a minute, then 429 with Retry-After."""
    rows = [{"email": "a@example.com"}, {"email": "b@example.com"}]
    codes = [
        ac("POST", "/import/bulk_import", json={"contacts": rows}).status_code for _ in range(100)
    ]
    assert codes == [200] * 100
    r = ac("POST", "/import/bulk_import", json={"contacts": rows})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    # A single-contact import has its own, smaller budget (20 a minute).
    one = [{"email": "solo@example.com"}]
    codes = [
        ac("POST", "/import/bulk_import", json={"contacts": one}).status_code for _ in range(21)
    ]
    assert codes == [200] * 20 + [429]


def test_errors_are_json(ac: Ac) -> None:
    assert ac.http.get(ac.base + "/contacts", headers={"Api-Token": "bad"}).json() == DENIED
    r = ac("POST", "/contacts", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "message" in r.json()
    r = ac("POST", "/contacts", json={"contact": {"email": "contact0000002@example.com"}})
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "duplicate"
    assert ac("GET", "/no-such-thing").json() == {"message": "Not Found"}
    r = ac("PATCH", "/contacts/1")
    assert (r.status_code, r.json()) == (405, {"message": "Method Not Allowed"})


def test_rate_limit_429_carries_retry_after_and_ratelimit_headers() -> None:
    """https://developers.activecampaign.com/reference/rate-limits: 5 requests a second per
    account; over it 429 with Retry-After, and RateLimit-Limit/-Remaining headers."""
    a = Ac(rate_limit=(5, 1.0), import_limits=True)
    try:
        answers = [a("GET", "/users/me") for _ in range(6)]
    finally:
        a.close()
    ok, over = answers[:5], answers[5]
    assert [r.status_code for r in ok] == [200] * 5
    assert [r.headers["RateLimit-Limit"] for r in ok] == ["5"] * 5
    assert [int(r.headers["RateLimit-Remaining"]) for r in ok] == [4, 3, 2, 1, 0]
    assert over.status_code == 429
    assert over.headers["Retry-After"] == "1"  # the window is one second
    assert over.headers["RateLimit-Remaining"] == "0"
    assert over.json() == {"message": "Too Many Requests"}


def test_the_reads_syncd_pages_with(ac: Ac) -> None:
    """What syncd's reads send: ``filters[updated_after]`` with ``id_greater`` and
    ``orders[id]=ASC`` paging, ``ids[]`` batches, ``tagid``, ``filters[deleted]``."""
    ac.sb.contacts[5].udate = ac.sb.contacts[6].udate = 2e9
    page = ac(
        "GET",
        "/contacts",
        params=[
            ("filters[updated_after]", "2033-01-01T00:00:00-05:00"),
            ("orders[id]", "ASC"),
            ("id_greater", "5"),
            ("limit", "100"),
        ],
    ).json()
    assert [c["id"] for c in page["contacts"]] == ["6"]
    some = ac("GET", "/contacts", params=[("ids[]", "9"), ("ids[]", "3"), ("limit", "100")])
    assert [c["id"] for c in some.json()["contacts"]] == ["3", "9"]
    tag = ac("GET", "/tags", params={"search": "added-to-salesforce-contact"}).json()["tags"][0]
    made = ac("POST", "/contactTags", json={"contactTag": {"contact": "8", "tag": tag["id"]}})
    assert made.status_code == 201
    tagged = ac("GET", "/contacts", params={"tagid": tag["id"], "ids[]": "8"}).json()
    assert [c["id"] for c in tagged["contacts"]] == ["8"]
    ac("DELETE", "/contacts/8")
    gone = ac("GET", "/contacts", params={"filters[deleted]": "1"}).json()
    assert [(c["id"], c["deleted"]) for c in gone["contacts"]] == [("8", "1")]


def test_tags_accounts_deals_and_the_v1_broadcast_call(ac: Ac) -> None:
    r = ac("POST", "/tags", json={"tag": {"tag": "fidelity", "tagType": "contact"}})
    assert r.status_code == 201 and r.json()["tag"]["tag"] == "fidelity"
    again = ac("POST", "/tags", json={"tag": {"tag": "Fidelity", "tagType": "contact"}})
    assert again.status_code == 422 and again.json()["errors"][0]["code"] == "duplicate"
    account = ac("POST", "/accounts", json={"account": {"name": "Fidelity Inc"}})
    assert account.status_code == 201
    aid = account.json()["account"]["id"]
    assert ac("PUT", f"/accounts/{aid}", json={"account": {"accountUrl": "https://f.io"}}).ok
    found = ac("GET", "/accounts", params={"search": "fidelity"}).json()["accounts"]
    assert [(a["id"], a["accountUrl"]) for a in found] == [(aid, "https://f.io")]
    deal = ac("POST", "/deals", json={"deal": {"title": "Big", "value": 100, "currency": "usd"}})
    assert deal.status_code == 201
    missing = ac("POST", "/deals", json={"deal": {"title": "No value", "currency": "usd"}})
    assert missing.status_code == 422
    v1 = ac.http.post(
        ac.base.removesuffix("/api/3") + "/admin/api.php",
        params={"api_action": "contact_sync", "api_key": AC_TOKEN, "api_output": "json"},
        data={"email": "v1@example.com", "p[1]": "1", "status[1]": "1", "lastmessage[1]": "1"},
    ).json()
    assert v1["result_code"] == 1 and v1["sendlast_should"] == 1 and v1["sendlast_did"] == 1

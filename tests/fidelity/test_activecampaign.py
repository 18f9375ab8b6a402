"""The ActiveCampaign simulator answers the way API-FACTS.md says AC does, errors included."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from syncd.sandbox.activecampaign.app import (
    ActiveCampaignSandbox,
    create_activecampaign_app,
    seed_activecampaign,
)
from syncd.sandbox.common import bound_port, serve

TOKEN = "fidelity-token"
AC_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
DUPLICATE = {
    "errors": [
        {
            "title": "Email address already exists in the system",
            "code": "duplicate",
            "source": {"pointer": "/data/attributes/email"},
        }
    ]
}


@dataclass
class Server:
    sandbox: ActiveCampaignSandbox
    url: str
    session: aiohttp.ClientSession


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    sb = ActiveCampaignSandbox()  # imports take AC's time, scaled (tests/timing.py)
    seed_activecampaign(sb, contacts=30)
    # The per-second limit is off so that these calls do not wait on it: it has its own test
    # (test_rate_limit_answers_429_with_retry_after).
    runner = await serve(create_activecampaign_app(sb, api_token=TOKEN, rate_limit=None))
    async with aiohttp.ClientSession() as session:
        yield Server(sb, f"http://127.0.0.1:{bound_port(runner)}", session)
    await runner.cleanup()


async def _send(
    srv: Server, method: str, path: str, body: Any = None, token: str | None = TOKEN
) -> tuple[int, dict[str, str], Any]:
    headers = {"Api-Token": token} if token is not None else {}
    async with srv.session.request(method, srv.url + path, json=body, headers=headers) as r:
        return r.status, dict(r.headers), await r.json(content_type=None)


async def _wait_import(srv: Server, batch: str) -> Any:
    for _ in range(3000):
        _, _, info = await _send(srv, "GET", f"/api/3/import/info?batchId={batch}")
        if info["status"] in ("completed", "failed", "interrupted"):
            return info
        await asyncio.sleep(0.01)
    raise AssertionError(f"import {batch} never ended")


Check = Callable[[Any], bool]
EXISTING = "contact0000000@example.com"
CASES: list[tuple[str, str, str, Any, str | None, int, Any]] = [
    # name, method, path, body, token, status, expected body (exact dict) or predicate
    (
        "bad key",
        "GET",
        "/api/3/contacts",
        None,
        "nope",
        403,
        {"message": "You are not authorized to access this file"},
    ),
    (
        "missing key",
        "GET",
        "/api/3/contacts",
        None,
        None,
        403,
        {"message": "You are not authorized to access this file"},
    ),
    (
        "duplicate create",
        "POST",
        "/api/3/contacts",
        {"contact": {"email": EXISTING.upper()}},
        TOKEN,
        422,
        DUPLICATE,
    ),
    (
        "invalid email",
        "POST",
        "/api/3/contacts",
        {"contact": {"email": "nope"}},
        TOKEN,
        422,
        lambda b: (
            b["errors"][0]["code"] == "email_invalid"
            and b["errors"][0]["source"]["pointer"] == "/data/attributes/email"
        ),
    ),
    (
        "sync invalid email",
        "POST",
        "/api/3/contact/sync",
        {"contact": {"email": ""}},
        TOKEN,
        422,
        lambda b: b["errors"][0]["title"] == "Contact Email Address is not valid.",
    ),
    (
        "meta.total is a string; limit capped at 100",
        "GET",
        "/api/3/contacts?limit=500",
        None,
        TOKEN,
        200,
        lambda b: b["meta"]["total"] == "30" and len(b["contacts"]) == 30,
    ),
    (
        "datetimes in AC format, ids as strings",
        "GET",
        "/api/3/contacts/1",
        None,
        TOKEN,
        200,
        lambda b: (
            AC_DATETIME.match(b["contact"]["udate"])
            and AC_DATETIME.match(b["contact"]["cdate"])
            and b["contact"]["id"] == "1"
            and b["contact"]["deleted"] == "0"
        ),
    ),
    (
        "unknown contact",
        "GET",
        "/api/3/contacts/99999",
        None,
        TOKEN,
        404,
        {"message": "No Result found for Subscriber with id 99999"},
    ),
    (
        "sync creates",
        "POST",
        "/api/3/contact/sync",
        {
            "contact": {
                "email": "new@example.com",
                "firstName": "N",
                "fieldValues": [{"field": "1", "value": "Acme"}],
            }
        },
        TOKEN,
        201,
        lambda b: (
            b["contact"]["email"] == "new@example.com"
            and isinstance(b["contact"]["id"], str)
            and b["fieldValues"][0]["field"] == "1"
            and b["fieldValues"][0]["value"] == "Acme"
        ),
    ),
    (
        "sync updates",
        "POST",
        "/api/3/contact/sync",
        {"contact": {"email": EXISTING, "lastName": "L"}},
        TOKEN,
        200,
        lambda b: b["contact"]["id"] == "1" and b["contact"]["lastName"] == "L",
    ),
    (
        "bulk import over 250",
        "POST",
        "/api/3/import/bulk_import",
        {"contacts": [{"email": f"b{i}@example.com"} for i in range(251)]},
        TOKEN,
        400,
        lambda b: b["success"] == 0 and b["failureReasons"],
    ),
    (
        "bulk import invalid row",
        "POST",
        "/api/3/import/bulk_import",
        {"contacts": [{"email": "ok@example.com"}, {"email": "bad"}]},
        TOKEN,
        400,
        lambda b: b["success"] == 0 and b["failureReasons"][0]["index"] == 1,
    ),
    (
        "bulk import empty",
        "POST",
        "/api/3/import/bulk_import",
        {"contacts": []},
        TOKEN,
        400,
        lambda b: b["success"] == 0 and b["failureReasons"],
    ),
    (
        "bulk import queued",
        "POST",
        "/api/3/import/bulk_import",
        {"contacts": [{"email": f"q{i}@example.com", "first_name": "Q"} for i in range(250)]},
        TOKEN,
        200,
        lambda b: (
            b["success"] == 1 and b["queued_contacts"] == 250 and isinstance(b["batchId"], str)
        ),
    ),
    (
        "tag search",
        "GET",
        "/api/3/tags?search=salesforce-lead",
        None,
        TOKEN,
        200,
        lambda b: (
            b["meta"]["total"] == "3" and all("salesforce-lead" in t["tag"] for t in b["tags"])
        ),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_request_answers_like_ac(server: Server, case: tuple[Any, ...]) -> None:
    _, method, path, body, token, status, expected = case
    got_status, _, got = await _send(server, method, path, body, token)
    assert got_status == status, got
    if callable(expected):
        assert expected(got), got
    else:
        assert got == expected


async def test_rate_limit_answers_429_with_retry_after() -> None:
    sb = ActiveCampaignSandbox()
    runner = await serve(create_activecampaign_app(sb, api_token=TOKEN, rate_limit=(5, 1.0)))
    try:
        async with aiohttp.ClientSession() as s:
            srv = Server(sb, f"http://127.0.0.1:{bound_port(runner)}", s)
            answers = [await _send(srv, "GET", "/api/3/users/me") for _ in range(6)]
    finally:
        await runner.cleanup()
    assert [a[0] for a in answers[:5]] == [200] * 5
    status, headers, body = answers[5]
    assert status == 429
    assert int(headers["Retry-After"]) >= 1
    assert body == {"message": "Too Many Requests"}


async def test_injected_faults_use_ac_bodies(server: Server) -> None:
    server.sandbox.faults.apply({"fail_next": 2, "status": 429, "retry_after": 2})
    status, headers, body = await _send(server, "GET", "/api/3/contacts")
    assert (status, headers["Retry-After"], body) == (429, "2", {"message": "Too Many Requests"})
    server.sandbox.faults.apply({"fail_next": 1, "status": 503, "retry_after": None})
    status, _, body = await _send(server, "GET", "/api/3/contacts")
    assert (status, body) == (503, {"message": "Service Unavailable"})


async def test_bulk_import_completes_async_and_keeps_unsubscribed(server: Server) -> None:
    sb = server.sandbox
    sb.set_membership(2, 1, 2, keep_unsub=False)
    sb.faults.apply({"fail_emails": ["fail@example.com"]})
    rows = [
        {"email": sb.contacts[2].email, "subscribe": [{"listid": 1}], "tags": ["imported"]},
        {"email": "fail@example.com"},
        {
            "email": "new1@example.com",
            "fields": [{"id": 1, "value": "Initech"}],
            "subscribe": [{"listid": 1}],
            "unsubscribe": [{"listid": 2}],
        },
    ]
    status, _, body = await _send(server, "POST", "/api/3/import/bulk_import", {"contacts": rows})
    assert status == 200
    batch = body["batchId"]
    _, _, info = await _send(server, "GET", f"/api/3/import/info?batchId={batch}")
    assert info["status"] in (False, "waiting", "claimed", "active")
    info = await _wait_import(server, batch)
    new_id = sb.by_email["new1@example.com"]
    # Only the created contact is listed: contact 2 was updated.
    assert info == {
        "status": "completed",
        "success": [str(new_id)],
        "failure": ["fail@example.com"],
    }
    assert sb.memberships[(2, 1)]["status"] == 2
    assert sb.memberships[(new_id, 1)]["status"] == 1
    assert sb.memberships[(new_id, 2)]["status"] == 2
    assert sb.contacts[new_id].field_values[1] == "Initech"
    assert sb.tag_by_name("imported") in sb.tags_of[2]
    assert [e.record_id for e in sb.writes_for("contact")] == ["2", str(new_id)]


async def test_contact_list_and_tags_round_trip(server: Server) -> None:
    status, _, body = await _send(
        server, "POST", "/api/3/contactTags", {"contactTag": {"contact": "3", "tag": "1"}}
    )
    assert status == 201 and body["contactTag"]["tag"] == "1"
    _, _, tags = await _send(server, "GET", "/api/3/contacts/3/contactTags")
    ct_id = next(t["id"] for t in tags["contactTags"] if t["tag"] == "1")
    assert (await _send(server, "DELETE", f"/api/3/contactTags/{ct_id}"))[0] == 200
    assert (await _send(server, "DELETE", f"/api/3/contactTags/{ct_id}"))[0] == 404
    status, _, body = await _send(
        server,
        "POST",
        "/api/3/contactLists",
        {"contactList": {"list": "2", "contact": "3", "status": 1}},
    )
    assert status == 200 and body["contactList"]["status"] == "1"
    _, _, lists = await _send(server, "GET", "/api/3/contacts/3/contactLists")
    assert {(x["list"], x["status"]) for x in lists["contactLists"]} >= {("2", "1")}


async def test_contact_list_newest_first_and_totals_follow_deletes(server: Server) -> None:
    """``orders[id]=DESC`` pages from the newest contact; meta.total counts live contacts."""
    status, _, _ = await _send(server, "DELETE", "/api/3/contacts/30")
    assert status == 200
    _, _, body = await _send(server, "GET", "/api/3/contacts?orders[id]=DESC&limit=2")
    assert [c["id"] for c in body["contacts"]] == ["29", "28"]
    assert body["meta"]["total"] == "29"
    _, _, body = await _send(
        server, "GET", "/api/3/contacts?orders[id]=DESC&limit=3&offset=2&id_greater=24"
    )
    assert [c["id"] for c in body["contacts"]] == ["27", "26", "25"]
    _, _, body = await _send(server, "GET", "/api/3/contacts?filters[deleted]=1")
    assert [c["id"] for c in body["contacts"]] == ["30"] and body["meta"]["total"] == "1"


async def test_bulk_import_reuses_tags_case_insensitively(server: Server) -> None:
    sb = server.sandbox
    rows = [
        {"email": "t1@example.com", "tags": ["VIP", "new"]},
        {"email": "t2@example.com", "tags": ["vip"]},
        {"email": "t3@example.com", "tags": ["New", "VIP"]},
    ]
    status, _, body = await _send(server, "POST", "/api/3/import/bulk_import", {"contacts": rows})
    assert status == 200
    info = await _wait_import(server, body["batchId"])
    assert info["status"] == "completed"
    vip, new = sb.tag_by_name("vip"), sb.tag_by_name("NEW")
    assert vip is not None and new is not None
    assert sum(1 for t in sb.tags.values() if str(t["tag"]).lower() in ("vip", "new")) == 2
    tagged = {e: set(sb.tags_of[sb.by_email[e]]) for e in ("t1@example.com", "t2@example.com")}
    assert tagged == {"t1@example.com": {vip, new}, "t2@example.com": {vip}}
    assert set(sb.tags_of[sb.by_email["t3@example.com"]]) == {vip, new}

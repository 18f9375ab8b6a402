"""The Salesforce simulator answers as API-FACTS.md says; a drifting simulator fails here."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from syncd.sandbox.common import bound_port, serve
from syncd.sandbox.salesforce.app import (
    SalesforceSandbox,
    bulk_insert_contacts,
    create_salesforce_app,
    seed_salesforce,
)

LIMIT_RE = re.compile(r"^api-usage=\d+/\d+$")
SF_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")
TOKEN_FIELDS = {"access_token", "instance_url", "id", "token_type", "issued_at", "signature"}
SESSION_EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
LIMIT_EXCEEDED = [
    {"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}
]
CC = {"grant_type": "client_credentials", "client_id": "cid", "client_secret": "sec"}


@dataclass
class Env:
    sb: SalesforceSandbox
    base: str
    http: aiohttp.ClientSession
    token: str = ""
    last_headers: dict[str, str] = field(default_factory=dict)

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        headers.update(kw.pop("headers", {}))
        async with self.http.request(method, self.base + path, headers=headers, **kw) as r:
            self.last_headers = dict(r.headers)
            return r.status, await r.json(content_type=None)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    sb = SalesforceSandbox(client_id="cid", client_secret="sec", refresh_token="rt")
    runner = await serve(create_salesforce_app(sb))
    async with aiohttp.ClientSession() as http:
        e = Env(sb, f"http://127.0.0.1:{bound_port(runner)}", http)
        status, body = await e.call("POST", "/services/oauth2/token", data=CC)
        assert status == 200
        e.token = body["access_token"]
        yield e
    await runner.cleanup()


Setup = Callable[[Env], None]


def _nothing(_: Env) -> None:
    return None


def _no_token(e: Env) -> None:
    e.token = ""


def _expire(e: Env) -> None:
    e.sb.faults.apply({"expire_tokens": True})


def _exhaust(e: Env) -> None:
    e.sb.faults.apply({"exhaust_quota": True})


def _revoke(e: Env) -> None:
    e.sb.faults.apply({"revoke_auth": True})


def _records(n: int) -> dict[str, Any]:
    return {
        "allOrNone": False,
        "records": [{"attributes": {"type": "Contact"}, "LastName": f"x{i}"} for i in range(n)],
    }


# name, setup, method, path, request kwargs, status, exact body (None: not compared)
CASES: list[tuple[str, Setup, str, str, dict[str, Any], int, Any]] = [
    ("no token", _no_token, "GET", "/services/data/v61.0/limits", {}, 401, SESSION_EXPIRED),
    ("expired token", _expire, "GET", "/services/data/v61.0/limits", {}, 401, SESSION_EXPIRED),
    ("quota", _exhaust, "GET", "/services/data/v61.0/limits", {}, 403, LIMIT_EXCEEDED),
    (
        "refresh revoked",
        _revoke,
        "POST",
        "/services/oauth2/token",
        {"data": {**CC, "grant_type": "refresh_token", "refresh_token": "rt"}},
        400,
        {"error": "invalid_grant", "error_description": "expired access/refresh token"},
    ),
    (
        "bad refresh token",
        _nothing,
        "POST",
        "/services/oauth2/token",
        {"data": {**CC, "grant_type": "refresh_token", "refresh_token": "nope"}},
        400,
        {"error": "invalid_grant", "error_description": "expired access/refresh token"},
    ),
    (
        "bad secret",
        _nothing,
        "POST",
        "/services/oauth2/token",
        {"data": {**CC, "client_secret": "wrong"}},
        400,
        {"error": "invalid_client", "error_description": "invalid client credentials"},
    ),
    (
        "bad grant",
        _nothing,
        "POST",
        "/services/oauth2/token",
        {"data": {"grant_type": "password"}},
        400,
        {"error": "unsupported_grant_type", "error_description": "grant type not supported"},
    ),
    (
        "over 200 records",
        _nothing,
        "POST",
        "/services/data/v61.0/composite/sobjects",
        {"json": _records(201)},
        400,
        [
            {
                "message": "record limit reached. cannot submit more than 200 records into "
                "this call",
                "errorCode": "EXCEEDED_ID_LIMIT",
            }
        ],
    ),
    (
        "unknown field",
        _nothing,
        "POST",
        "/services/data/v61.0/composite/sobjects",
        {"json": {"records": [{"attributes": {"type": "Contact"}, "Nope__c": 1}]}},
        400,
        [
            {
                "message": "No such column 'Nope__c' on sobject of type Contact",
                "errorCode": "INVALID_FIELD",
            }
        ],
    ),
]


@pytest.mark.parametrize(
    ("name", "setup", "method", "path", "kwargs", "status", "body"),
    CASES,
    ids=[c[0] for c in CASES],
)
async def test_request_answers_like_salesforce(
    env: Env,
    name: str,
    setup: Setup,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    body: Any,
) -> None:
    setup(env)
    got_status, got_body = await env.call(method, path, **kwargs)
    assert got_status == status, name
    assert got_body == body, name
    if path.startswith("/services/data/") and status != 401:
        assert LIMIT_RE.match(env.last_headers["Sforce-Limit-Info"])


async def test_token_response_fields(env: Env) -> None:
    status, body = await env.call("POST", "/services/oauth2/token", data=CC)
    assert status == 200
    assert set(body) == TOKEN_FIELDS  # no expires_in: sessions end by inactivity
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == env.base
    assert body["issued_at"].isdigit()


async def test_limit_header_counts_calls(env: Env) -> None:
    env.sb.daily_limit = 5000
    await env.call("GET", "/services/data/v58.0/limits")
    first = env.last_headers["Sforce-Limit-Info"]
    await env.call("GET", "/services/data/v61.0/limits")
    assert first == "api-usage=1/5000"
    assert env.last_headers["Sforce-Limit-Info"] == "api-usage=2/5000"


async def test_malformed_query(env: Env) -> None:
    status, body = await env.call(
        "GET", "/services/data/v61.0/query", params={"q": "SELECT Id FROM Contact WHERE"}
    )
    assert status == 400
    assert isinstance(body, list) and set(body[0]) == {"message", "errorCode"}
    assert body[0]["errorCode"] == "MALFORMED_QUERY"


async def test_query_shape_and_paging(env: Env) -> None:
    bulk_insert_contacts(env.sb, 2100)
    q = "SELECT Id, LastName, SystemModstamp FROM Contact ORDER BY SystemModstamp"
    status, body = await env.call("GET", "/services/data/v61.0/query", params={"q": q})
    assert status == 200
    assert set(body) == {"totalSize", "done", "nextRecordsUrl", "records"}
    assert body["totalSize"] == 2100 and body["done"] is False and len(body["records"]) == 2000
    assert re.match(r"^/services/data/v61\.0/query/01g\w+-2000$", body["nextRecordsUrl"])
    rec = body["records"][0]
    assert rec["attributes"] == {
        "type": "Contact",
        "url": f"/services/data/v61.0/sobjects/Contact/{rec['Id']}",
    }
    assert len(rec["Id"]) == 18 and rec["Id"].startswith("003")
    assert SF_DATETIME.match(rec["SystemModstamp"])
    status, more = await env.call("GET", body["nextRecordsUrl"])
    assert status == 200 and more["done"] is True and "nextRecordsUrl" not in more
    assert len(more["records"]) == 100


async def test_collection_result_shape(env: Env) -> None:
    records = [
        {"attributes": {"type": "Contact"}, "LastName": "Ok", "Email": "ok@example.com"},
        {"attributes": {"type": "Contact"}, "Email": "nolast@example.com"},
    ]
    status, body = await env.call(
        "POST",
        "/services/data/v61.0/composite/sobjects",
        json={"allOrNone": False, "records": records},
    )
    assert status == 200
    assert body[0] == {"id": body[0]["id"], "success": True, "errors": []}
    assert body[1]["success"] is False and body[1]["id"] is None
    assert set(body[1]["errors"][0]) == {"statusCode", "message", "fields"}
    assert body[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert body[1]["errors"][0]["fields"] == ["LastName"]
    status, up = await env.call(
        "PATCH",
        "/services/data/v61.0/composite/sobjects/Contact/Syncd_Hub_Id__c",
        json={
            "records": [
                {"attributes": {"type": "Contact"}, "LastName": "U", "Syncd_Hub_Id__c": "k1"}
            ]
        },
    )
    assert status == 200 and up == [
        {"id": up[0]["id"], "success": True, "errors": [], "created": True}
    ]


async def test_all_or_none_rolls_back(env: Env) -> None:
    records = [
        {"attributes": {"type": "Lead"}, "LastName": "A", "Company": "C"},
        {"attributes": {"type": "Lead"}, "LastName": "B"},
    ]
    status, body = await env.call(
        "POST",
        "/services/data/v61.0/composite/sobjects",
        json={"allOrNone": True, "records": records},
    )
    assert status == 200
    assert body[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert body[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert body[1]["errors"][0]["fields"] == ["Company"]
    assert env.sb.count("Lead") == 0 and not env.sb.ledger


async def test_injected_errors_are_salesforce_shaped(env: Env) -> None:
    env.sb.faults.apply({"fail_next": 1, "status": 503})
    status, body = await env.call("GET", "/services/data/v61.0/limits")
    assert status == 503 and body[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert LIMIT_RE.match(env.last_headers["Sforce-Limit-Info"])
    env.sb.faults.apply({"fail_next": 1, "status": 429, "retry_after": 3})
    status, body = await env.call("GET", "/services/data/v61.0/limits")
    assert status == 429 and env.last_headers["Retry-After"] == "3"


async def test_deleted_endpoint_shape(env: Env) -> None:
    status, body = await env.call(
        "GET",
        "/services/data/v61.0/sobjects/Contact/deleted/",
        params={"start": "2099-01-01T00:00:00Z", "end": "2099-01-02T00:00:00Z"},
    )
    assert status == 200
    assert set(body) == {"deletedRecords", "earliestDateAvailable", "latestDateCovered"}
    assert SF_DATETIME.match(body["earliestDateAvailable"])
    status, body = await env.call(
        "GET",
        "/services/data/v61.0/sobjects/Contact/deleted/",
        params={"start": "2001-01-01T00:00:00Z", "end": "2001-01-02T00:00:00Z"},
    )
    assert status == 400 and body[0]["errorCode"] == "INVALID_REPLICATION_DATE"


async def test_describe_fields_say_what_is_required(env: Env) -> None:
    status, body = await env.call("GET", "/services/data/v61.0/sobjects/Contact/describe")
    assert status == 200
    fields = {f["name"]: f for f in body["fields"]}
    for key in ("name", "type", "nillable", "createable", "defaultedOnCreate", "length"):
        assert key in fields["LastName"]
    required = {
        n
        for n, f in fields.items()
        if f["createable"] and not f["nillable"] and not f["defaultedOnCreate"]
    }
    assert required == {"LastName"}
    assert fields["Syncd_Hub_Id__c"]["externalId"] is True


async def test_query_all_includes_deleted_rows(env: Env) -> None:
    a = env.sb.insert("Contact", {"LastName": "Kept"})
    b = env.sb.insert("Contact", {"LastName": "Gone"})
    status, _ = await env.call("DELETE", f"/services/data/v61.0/sobjects/Contact/{b['Id']}")
    assert status == 204
    q = {"q": "SELECT Id, IsDeleted FROM Contact"}
    _, live = await env.call("GET", "/services/data/v61.0/query", params=q)
    _, every = await env.call("GET", "/services/data/v61.0/queryAll", params=q)
    assert [r["Id"] for r in live["records"]] == [a["Id"]]
    assert {(r["Id"], r["IsDeleted"]) for r in every["records"]} == {
        (a["Id"], False),
        (b["Id"], True),
    }


async def test_jwt_with_unknown_key_is_invalid_grant(env: Env) -> None:
    status, body = await env.call(
        "POST",
        "/services/oauth2/token",
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "x.y.z"},
    )
    assert status == 400 and body["error"] == "invalid_grant"


def test_seed_is_reproducible() -> None:
    one, two = SalesforceSandbox(), SalesforceSandbox()
    seed_salesforce(one, contacts=20, leads=20, converted_fraction=0.25, seed=7)
    seed_salesforce(two, contacts=20, leads=20, converted_fraction=0.25, seed=7)
    emails = [sorted(str(r["Email"]) for r in sb.live("Lead")) for sb in (one, two)]
    assert emails[0] == emails[1]
    converted = [r for r in one.live("Lead") if r["IsConverted"]]
    assert len(converted) == 5
    for lead in converted:
        assert lead["ConvertedDate"] is not None
        assert lead["ConvertedContactId"] in one.records["Contact"]
        assert lead["ConvertedAccountId"] in one.records["Account"]
        assert lead["ConvertedOpportunityId"] in one.records["Opportunity"]

"""The HubSpot simulator answers like HubSpot: a table of request -> status, body, headers.

Expected values come from /work/shared/API-FACTS.md and the vendor's documented behaviour.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from syncd.sandbox.common import bound_port, serve
from syncd.sandbox.hubspot.app import HubSpotSandbox, bulk_load, create_hubspot_app

TOKEN = "pat-na1-fidelity"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LIMIT_HEADERS = (
    "X-HubSpot-RateLimit-Max",
    "X-HubSpot-RateLimit-Remaining",
    "X-HubSpot-RateLimit-Interval-Milliseconds",
    "X-HubSpot-RateLimit-Daily",
    "X-HubSpot-RateLimit-Daily-Remaining",
)


@dataclass
class Case:
    """One row of the table: set-up, request, and what must come back."""

    name: str
    method: str
    path: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=lambda: dict(AUTH))
    setup: Callable[[HubSpotSandbox], None] = lambda sb: None
    repeat: int = 1  # send this many times; check the last answer
    status: int = 200
    exact: dict[str, Any] | None = None
    subset: dict[str, Any] = field(default_factory=dict)
    check: Callable[[dict[str, Any]], None] = lambda body: None
    expect_headers: dict[str, str] = field(default_factory=dict)


def _has_correlation_id(body: dict[str, Any]) -> None:
    # Every HubSpot error body carries one, the 401s included (the official SDK shows it).
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}",
        str(body.get("correlationId")),
    ), body
    assert set(body) == {"status", "message", "correlationId", "category"}, body


def _seed(sb: HubSpotSandbox) -> None:
    bulk_load(
        sb, "contacts", [{"email": f"s{i}@example.com", "firstname": f"S{i}"} for i in range(5)]
    )


def _search_shape(body: dict[str, Any]) -> None:
    assert body["total"] == 5
    assert len(body["results"]) == 2
    assert body["paging"] == {"next": {"after": "2"}}
    row = body["results"][0]
    assert set(row) == {"id", "properties", "createdAt", "updatedAt", "archived"}
    assert isinstance(row["id"], str) and row["archived"] is False
    assert ISO_MS.match(row["createdAt"]) and ISO_MS.match(row["updatedAt"])
    assert ISO_MS.match(row["properties"]["lastmodifieddate"])
    assert row["properties"]["hs_object_id"] == row["id"]


def _partial_shape(body: dict[str, Any]) -> None:
    assert body["status"] == "COMPLETE"
    assert body["numErrors"] == 1
    assert len(body["results"]) == 1 and body["results"][0]["new"] is True
    assert body["results"][0]["objectWriteTraceId"] == "0"
    err = body["errors"][0]
    assert err["status"] == "error" and err["category"] == "VALIDATION_ERROR"
    assert err["context"]["objectWriteTraceId"] == ["1"]
    assert "INVALID_EMAIL" in err["message"]
    assert ISO_MS.match(body["startedAt"]) and ISO_MS.match(body["completedAt"])


def _complete_shape(body: dict[str, Any]) -> None:
    assert body["status"] == "COMPLETE" and "errors" not in body and "numErrors" not in body
    assert [r["properties"]["email"] for r in body["results"]] == ["n@example.com"]


def _rate_limit(policy: str) -> Callable[[dict[str, Any]], None]:
    def check(body: dict[str, Any]) -> None:
        assert body["status"] == "error"
        assert body["errorType"] == "RATE_LIMIT"
        assert body["policyName"] == policy
        assert body["correlationId"] and body["message"]

    return check


def _conflict(sb: HubSpotSandbox) -> None:
    sb.faults.fail_emails = set()
    bulk_load(sb, "contacts", [{"email": "dup@example.com"}])


def _conflict_shape(body: dict[str, Any]) -> None:
    assert body["status"] == "error" and body["category"] == "CONFLICT"
    assert re.fullmatch(r"Contact already exists\. Existing ID: \d+", body["message"])


def _server_error_shape(body: dict[str, Any]) -> None:
    assert body["status"] == "error" and body["correlationId"]


def _unknown_property_shape(body: dict[str, Any]) -> None:
    assert body["message"].startswith("Property values were not valid: ")
    assert "PROPERTY_DOESNT_EXIST" in body["message"]


def _archive_one(sb: HubSpotSandbox) -> None:
    _seed(sb)
    sb.archive("contacts", next(iter(sb.objects["contacts"])))


def _archived_shape(body: dict[str, Any]) -> None:
    assert len(body["results"]) == 1
    row = body["results"][0]
    assert row["archived"] is True and ISO_MS.match(row["archivedAt"])


def _tag_property_shape(body: dict[str, Any]) -> None:
    tags = [p for p in body["results"] if p["name"] == "syncd_sync_tags"]
    assert [(p["type"], p["fieldType"]) for p in tags] == [("enumeration", "checkbox")]


CASES = [
    Case(
        "missing token",
        "GET",
        "/crm/v3/objects/contacts",
        headers={},
        status=401,
        subset={
            "status": "error",
            "message": "Authentication credentials not found.",
            "category": "INVALID_AUTHENTICATION",
        },
        check=_has_correlation_id,
    ),
    Case(
        "wrong token",
        "GET",
        "/crm/v3/objects/contacts",
        headers={"Authorization": "Bearer nope"},
        status=401,
        subset={
            "status": "error",
            "message": "Authentication credentials not found.",
            "category": "INVALID_AUTHENTICATION",
        },
        check=_has_correlation_id,
    ),
    Case(
        "revoked",
        "GET",
        "/crm/v3/objects/contacts",
        setup=lambda sb: sb.faults.apply({"revoke_auth": True}),
        status=401,
        subset={"status": "error", "category": "INVALID_AUTHENTICATION"},
    ),
    Case(
        "expired",
        "GET",
        "/crm/v3/objects/contacts",
        setup=lambda sb: sb.faults.apply({"expire_tokens": True}),
        status=401,
        subset={"status": "error", "category": "EXPIRED_AUTHENTICATION"},
    ),
    Case(
        "ten-secondly limit",
        "GET",
        "/crm/v3/objects/contacts",
        repeat=4,
        status=429,
        check=_rate_limit("TEN_SECONDLY_ROLLING"),
        expect_headers={
            "X-HubSpot-RateLimit-Max": "3",
            "X-HubSpot-RateLimit-Remaining": "0",
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
        },
    ),
    Case(
        "daily limit",
        "GET",
        "/crm/v3/objects/contacts",
        setup=lambda sb: sb.faults.apply({"exhaust_quota": True}),
        status=429,
        check=_rate_limit("DAILY"),
        expect_headers={"X-HubSpot-RateLimit-Daily-Remaining": "0"},
    ),
    Case(
        "search limit",
        "POST",
        "/crm/v3/objects/contacts/search",
        body={"limit": 1},
        setup=lambda sb: setattr(sb, "search_rate_limit", (2, 10.0)),
        repeat=3,
        status=429,
        check=_rate_limit("SECONDLY"),
    ),
    Case(
        "search response",
        "POST",
        "/crm/v3/objects/contacts/search",
        body={
            "filterGroups": [
                {"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": "0"}]}
            ],
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
            "limit": 2,
        },
        setup=_seed,
        check=_search_shape,
    ),
    Case(
        "search limit over 200",
        "POST",
        "/crm/v3/objects/contacts/search",
        body={"limit": 201},
        status=400,
        subset={"status": "error", "category": "VALIDATION_ERROR"},
    ),
    Case(
        "search past 10,000",
        "POST",
        "/crm/v3/objects/contacts/search",
        body={"limit": 10, "after": "10000"},
        status=400,
        subset={"status": "error", "category": "VALIDATION_ERROR"},
    ),
    Case(
        "batch upsert all good",
        "POST",
        "/crm/v3/objects/contacts/batch/upsert",
        body={"inputs": [{"id": "n@example.com", "idProperty": "email", "properties": {}}]},
        check=_complete_shape,
    ),
    Case(
        "batch upsert partial (207)",
        "POST",
        "/crm/v3/objects/contacts/batch/upsert",
        body={
            "inputs": [
                {
                    "id": "ok@example.com",
                    "idProperty": "email",
                    "properties": {"firstname": "Ok"},
                    "objectWriteTraceId": "0",
                },
                {
                    "id": "bad-address",
                    "idProperty": "email",
                    "properties": {},
                    "objectWriteTraceId": "1",
                },
            ]
        },
        status=207,
        check=_partial_shape,
    ),
    Case(
        "more than 100 inputs",
        "POST",
        "/crm/v3/objects/contacts/batch/create",
        body={"inputs": [{"properties": {"email": f"x{i}@example.com"}} for i in range(101)]},
        status=400,
        subset={"status": "error", "category": "VALIDATION_ERROR"},
    ),
    Case(
        "create existing email (409)",
        "POST",
        "/crm/v3/objects/contacts/batch/create",
        body={"inputs": [{"properties": {"email": "dup@example.com"}}]},
        setup=_conflict,
        status=409,
        check=lambda b: (
            (
                b["status"] == "error"
                and b["category"] == "CONFLICT"
                and re.fullmatch(r"Contact already exists\. Existing ID: \d+", b["message"])
            )
            or pytest.fail(f"unexpected 409 body {b}")
        ),
    ),
    Case(
        "upsert by a non-unique property",
        "POST",
        "/crm/v3/objects/companies/batch/upsert",
        body={"inputs": [{"id": "acme.com", "idProperty": "domain", "properties": {}}]},
        status=400,
        subset={"status": "error", "category": "VALIDATION_ERROR"},
    ),
    Case(
        "unknown record",
        "PATCH",
        "/crm/v3/objects/contacts/1",
        body={"properties": {"firstname": "x"}},
        status=404,
        subset={"status": "error", "category": "OBJECT_NOT_FOUND"},
    ),
    Case(
        "unknown property",
        "PATCH",
        "/crm/v3/objects/contacts/100001",  # the first id a fresh sandbox hands out
        body={"properties": {"nope": "x"}},
        setup=_seed,
        status=400,
        subset={"status": "error", "category": "VALIDATION_ERROR"},
        check=_unknown_property_shape,
    ),
    Case(
        "injected 503",
        "GET",
        "/crm/v3/objects/contacts",
        setup=lambda sb: sb.faults.apply({"fail_next": 1, "status": 503}),
        status=503,
        check=lambda b: (b["status"] == "error" and "correlationId" in b) or pytest.fail(str(b)),
    ),
    Case(
        "injected 429 with Retry-After",
        "GET",
        "/crm/v3/objects/contacts",
        setup=lambda sb: sb.faults.apply({"fail_next": 1, "status": 429, "retry_after": 2}),
        status=429,
        check=_rate_limit("TEN_SECONDLY_ROLLING"),
        expect_headers={"Retry-After": "2"},
    ),
    Case(
        "archived listing",
        "GET",
        "/crm/v3/objects/contacts?archived=true",
        setup=_archive_one,
        check=_archived_shape,
    ),
    Case("property definitions", "GET", "/crm/v3/properties/contacts", check=_tag_property_shape),
]


@pytest.fixture
async def served() -> AsyncIterator[Callable[..., Any]]:
    runners = []

    async def _serve(sb: HubSpotSandbox, rate_limit: tuple[int, float]) -> str:
        runner = await serve(create_hubspot_app(sb, token=TOKEN, rate_limit=rate_limit))
        runners.append(runner)
        return f"http://127.0.0.1:{bound_port(runner)}"

    yield _serve
    for r in runners:
        await r.cleanup()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_fidelity(case: Case, served: Callable[..., Any]) -> None:
    sb = HubSpotSandbox(search_rate_limit=(100, 1.0))
    case.setup(sb)
    url = await served(sb, (3, 10.0) if case.repeat > 1 and "ten" in case.name else (100, 10.0))
    async with aiohttp.ClientSession() as s:
        for _ in range(case.repeat):
            async with s.request(
                case.method, url + case.path, json=case.body, headers=case.headers
            ) as r:
                status, body, headers = r.status, await r.json(), r.headers
    assert status == case.status, body
    if case.exact is not None:
        assert body == case.exact
    for key, value in case.subset.items():
        assert body[key] == value, body
    case.check(body)
    for name, value in case.expect_headers.items():
        assert headers.get(name) == value, (name, dict(headers))
    if not case.path.startswith("/_sandbox") and "injected" not in case.name:
        for name in LIMIT_HEADERS:
            assert name in headers, f"{name} missing on {case.name}"


async def test_search_lag_is_on_by_default_and_switched_by_the_faults_endpoint(
    served: Callable[..., Any],
) -> None:
    """Search finds a create only after the index lag (reads by id at once); the lag is set
    (or made 0) with ``POST /_sandbox/faults {"search_lag": seconds}``, and refused when it is
    not a number of seconds."""
    sb = HubSpotSandbox(search_rate_limit=None)
    assert sb.index.lag > 0  # the vendor's default, on the test clock
    url = await served(sb, (100, 10.0))
    find = {
        "filterGroups": [
            {"filters": [{"propertyName": "email", "operator": "EQ", "value": "new@example.com"}]}
        ]
    }
    async with aiohttp.ClientSession() as s:

        async def call(method: str, path: str, body: Any) -> tuple[int, Any]:
            async with s.request(method, url + path, json=body, headers=AUTH) as r:
                return r.status, await r.json()

        sb.index.set_lag(60.0)  # long enough that nothing is indexed during this test
        status, made = await call(
            "POST", "/crm/v3/objects/contacts", {"properties": {"email": "new@example.com"}}
        )
        assert status == 201
        assert (await call("POST", "/crm/v3/objects/contacts/search", find))[1]["total"] == 0
        status, _ = await call("GET", f"/crm/v3/objects/contacts/{made['id']}", None)
        assert status == 200
        for bad in (-1, "soon", True):
            status, body = await call("POST", "/_sandbox/faults", {"search_lag": bad})
            assert status == 400, body
        assert (await call("POST", "/_sandbox/faults", {"search_lag": 0}))[0] == 200
        found = (await call("POST", "/crm/v3/objects/contacts/search", find))[1]
        assert [r["id"] for r in found["results"]] == [made["id"]]

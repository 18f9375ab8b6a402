"""The Salesforce simulator answers as the vendor documents; a drifting simulator fails here.

The first part calls the simulator with plain HTTP and compares exact bodies. The second
drives it with simple-salesforce, a client nobody in this project wrote: every operation
syncd uses (client-credentials login, query with queryMore paging, queryAll, sObject
Collections create/update/upsert/delete, the deleted resource, describe, limits, errors) and
the ones an operator would try against `syncd sandbox` (single-record CRUD, upsert by
external id, describe global, the versions list). simple-salesforce addresses
``https://{domain}.salesforce.com`` and ``https://{instance}``; a transport adapter sends
those requests to the simulator on loopback, unchanged otherwise.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from syncd.sandbox.common import bound_port, serve
from syncd.sandbox.runner import SF_CLIENT_ID, SF_CLIENT_SECRET, SandboxThread
from syncd.sandbox.salesforce.app import (
    SalesforceSandbox,
    bulk_insert_contacts,
    create_salesforce_app,
    seed_salesforce,
)
from syncd.sandbox.salesforce.soql import now_utc

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


# == driven by simple-salesforce ==============================================================

EXT = "Syncd_Hub_Id__c"
DUP_HEADER = "Sforce-Duplicate-Rule-Header"


class _Loopback(HTTPAdapter):
    """Sends every https request to the simulator's http address, path and query kept."""

    def __init__(self, base: str) -> None:
        super().__init__()
        self._netloc = urlsplit(base).netloc

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        parts = urlsplit(request.url)
        request.url = urlunsplit(("http", self._netloc, parts.path, parts.query, ""))
        return super().send(request, *args, **kwargs)


class Org:
    """The simulator in its own thread, and simple-salesforce clients logged in to it."""

    def __init__(self) -> None:
        self.thread = SandboxThread(("salesforce",))
        self.url = self.thread.set.url("salesforce")
        self.sb: SalesforceSandbox = self.thread.set.state("salesforce")
        self.sf = self.client()

    def session(self) -> requests.Session:
        s = requests.Session()
        s.trust_env = False  # no proxy between the client and loopback
        s.mount("https://", _Loopback(self.url))
        return s

    def client(self, version: str = "59.0", secret: str = SF_CLIENT_SECRET) -> Salesforce:
        """Client credentials with HTTP Basic client authentication (what simple-salesforce
        sends for a My Domain ``domain``)."""
        return Salesforce(
            consumer_key=SF_CLIENT_ID,
            consumer_secret=secret,
            domain="syncd-sandbox.my",
            session=self.session(),
            version=version,
        )

    def run(self, fn: Any, *args: Any) -> Any:
        return self.thread.run(fn, *args)

    def close(self) -> None:
        self.thread.close()


@pytest.fixture
def org() -> Iterator[Org]:
    o = Org()
    try:
        yield o
    finally:
        o.close()


def _first_error(exc: Any) -> dict[str, Any]:
    content = exc.value.content
    assert isinstance(content, list), content  # a JSON array, never text
    return dict(content[0])


# -- login, versions, describe, limits ------------------------------------------------------


def test_client_credentials_login_with_basic_client_authentication(org: Org) -> None:
    assert org.sf.session_id and org.sf.sf_instance == urlsplit(org.url).netloc
    with pytest.raises(SalesforceAuthenticationFailed) as exc:
        org.client(secret="wrong")
    assert exc.value.code == "invalid_client"


def test_expired_session_is_renewed_by_the_client(org: Org) -> None:
    org.run(lambda: org.sb.faults.apply({"expire_tokens": True}))
    assert org.sf.limits()["DailyApiRequests"]["Max"] > 0  # 401, login again, retried


def test_versions_list_needs_no_token(org: Org) -> None:
    r = org.session().get("https://ignored/services/data/")
    assert r.status_code == 200
    versions = r.json()
    assert {"label": "Summer '24", "url": "/services/data/v61.0", "version": "61.0"} in versions
    assert all(set(v) == {"label", "url", "version"} for v in versions)


def test_describe_global_and_object(org: Org) -> None:
    described = org.sf.describe()
    assert described["encoding"] == "UTF-8" and described["maxBatchSize"] == 200
    names = {o["name"]: o for o in described["sobjects"]}
    assert {"Contact", "Lead", "Account", "Opportunity"} <= set(names)
    assert names["Contact"]["keyPrefix"] == "003"
    assert names["Contact"]["urls"]["rowTemplate"] == "/services/data/v59.0/sobjects/Contact/{ID}"
    fields = {f["name"]: f for f in org.sf.Contact.describe()["fields"]}
    assert fields[EXT]["externalId"] is True and fields["LastName"]["nillable"] is False
    assert org.sf.Lead.metadata()["objectDescribe"]["name"] == "Lead"


def test_limits_and_usage_header(org: Org) -> None:
    limits = org.sf.limits()
    assert set(limits["DailyApiRequests"]) == {"Max", "Remaining"}
    usage = org.sf.api_usage["api-usage"]
    assert usage.total == limits["DailyApiRequests"]["Max"] and usage.used >= 1


# -- queries --------------------------------------------------------------------------------


def test_query_and_query_more_page_through_2000_records(org: Org) -> None:
    org.run(bulk_insert_contacts, org.sb, 2100)
    soql = "SELECT Id, LastName, SystemModstamp FROM Contact ORDER BY SystemModstamp"
    first = org.sf.query(soql)  # GET …/query/?q= (with the slash)
    assert first["totalSize"] == 2100 and first["done"] is False and len(first["records"]) == 2000
    more = org.sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert more["done"] is True and len(more["records"]) == 100
    every = org.sf.query_all(soql)
    assert len({r["Id"] for r in every["records"]}) == 2100
    # Datetimes are whole seconds, as Salesforce keeps them.
    assert all(r["SystemModstamp"].endswith(".000+0000") for r in every["records"])


def test_query_all_includes_deleted_records(org: Org) -> None:
    kept = org.sf.Contact.create({"LastName": "Kept"})["id"]
    gone = org.sf.Contact.create({"LastName": "Gone"})["id"]
    assert org.sf.Contact.delete(gone) == 204
    soql = "SELECT Id, IsDeleted FROM Contact"
    assert [r["Id"] for r in org.sf.query_all(soql)["records"]] == [kept]
    every = org.sf.query_all(soql, include_deleted=True)["records"]
    assert {(r["Id"], r["IsDeleted"]) for r in every} == {(kept, False), (gone, True)}


def test_soql_compares_datetimes_to_the_second(org: Org) -> None:
    rec = org.sf.Contact.create({"LastName": "Stamp"})
    stamp = org.sf.Contact.get(rec["id"])["SystemModstamp"]
    later = stamp.replace(".000+0000", ".900Z")
    found = org.sf.query(f"SELECT Id FROM Contact WHERE SystemModstamp >= {later}")
    assert [r["Id"] for r in found["records"]] == [rec["id"]]


# -- single records ---------------------------------------------------------------------------


def test_single_record_create_get_update_delete(org: Org) -> None:
    created = org.sf.Contact.create({"LastName": "Lovelace", "Email": "ada@example.com"})
    assert set(created) == {"id", "success", "errors"} and created["success"] is True
    rid = created["id"]
    got = org.sf.Contact.get(rid)
    assert got["attributes"] == {
        "type": "Contact",
        "url": f"/services/data/v59.0/sobjects/Contact/{rid}",
    }
    assert got["LastName"] == "Lovelace" and got["Email"] == "ada@example.com"
    assert org.sf.Contact.get(rid[:15])["Id"] == rid  # the 15-character id too
    assert org.sf.Contact.update(rid, {"FirstName": "Ada"}) == 204
    assert org.sf.Contact.get(rid)["FirstName"] == "Ada"
    assert org.sf.Contact.delete(rid) == 204
    with pytest.raises(SalesforceResourceNotFound) as exc:
        org.sf.Contact.get(rid)
    assert _first_error(exc)["errorCode"] == "ENTITY_IS_DELETED"


def test_single_record_errors_are_json_arrays(org: Org) -> None:
    with pytest.raises(SalesforceMalformedRequest) as bad:
        org.sf.Contact.create({"Email": "no-last-name@example.com"})
    assert _first_error(bad) == {
        "message": "Required fields are missing: [LastName]",
        "errorCode": "REQUIRED_FIELD_MISSING",
        "fields": ["LastName"],
    }
    with pytest.raises(SalesforceResourceNotFound) as missing:
        org.sf.Contact.get("003000000000000AAA")
    assert _first_error(missing)["errorCode"] == "NOT_FOUND"
    with pytest.raises(SalesforceResourceNotFound) as not_an_id:
        org.sf.Contact.get("not-an-id")
    assert "Provided external ID field does not exist" in _first_error(not_an_id)["message"]
    with pytest.raises(SalesforceResourceNotFound) as no_object:
        org.sf.restful("sobjects/Nope__c/describe")
    assert _first_error(no_object)["errorCode"] == "NOT_FOUND"
    with pytest.raises(SalesforceResourceNotFound) as no_resource:
        org.sf.restful("no/such/resource")
    assert _first_error(no_resource) == {
        "message": "The requested resource does not exist",
        "errorCode": "NOT_FOUND",
    }
    with pytest.raises(SalesforceGeneralError) as method:
        org.sf.restful("limits", method="PUT")
    assert exc_status(method) == 405
    assert _first_error(method)["errorCode"] == "METHOD_NOT_ALLOWED"
    with pytest.raises(SalesforceMalformedRequest) as soql:
        org.sf.query("SELECT Id FROM Contact WHERE")
    assert _first_error(soql)["errorCode"] == "MALFORMED_QUERY"


def exc_status(exc: Any) -> int:
    return int(exc.value.status)


def test_upsert_by_external_id_creates_then_updates(org: Org) -> None:
    path = f"{EXT}/hub-1"
    assert org.sf.Contact.upsert(path, {"LastName": "First"}) == 201
    again = org.sf.Contact.upsert(path, {"LastName": "Second"}, raw_response=True)
    # From API 46.0 an update answers 200 with created: false; before, 204 and no body.
    assert again.status_code == 200
    assert again.json() == {
        "id": again.json()["id"],
        "success": True,
        "errors": [],
        "created": False,
    }
    assert org.sf.Contact.get_by_custom_id(EXT, "hub-1")["LastName"] == "Second"
    old = org.client(version="45.0")
    assert old.Contact.upsert(path, {"LastName": "Third"}) == 204
    with pytest.raises(SalesforceResourceNotFound) as exc:
        org.sf.Contact.upsert("Email/x@example.com", {"LastName": "X"})
    assert "Provided external ID field does not exist" in _first_error(exc)["message"]


def test_deleted_and_updated_resources(org: Org) -> None:
    def setup() -> tuple[str, str]:
        a = org.sb.insert("Contact", {"LastName": "A"}, at=now_utc() - timedelta(minutes=5))
        b = org.sb.insert("Contact", {"LastName": "B"}, at=now_utc() - timedelta(minutes=5))
        org.sb.delete("Contact", b["Id"], at=now_utc() - timedelta(minutes=3))
        return a["Id"], b["Id"]

    kept, gone = org.run(setup)
    end = datetime.now(UTC)
    start = end - timedelta(minutes=10)
    deleted = org.sf.Contact.deleted(start, end)
    assert [d["id"] for d in deleted["deletedRecords"]] == [gone]
    assert set(deleted) == {"deletedRecords", "earliestDateAvailable", "latestDateCovered"}
    updated = org.sf.Contact.updated(start, end)
    assert updated["ids"] == [kept] and "latestDateCovered" in updated


# -- sObject Collections -------------------------------------------------------------------------


def _records(*rows: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"attributes": {"type": "Contact"}, **row} for row in rows]


def test_collections_create_update_upsert_delete(org: Org) -> None:
    created = org.sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": False,
            "records": _records({"LastName": "One"}, {"LastName": "Two"}, {"Email": "x@x.io"}),
        },
    )
    assert [r["success"] for r in created] == [True, True, False]
    assert created[2]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    ids = [r["id"] for r in created[:2]]
    updated = org.sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={
            "records": _records({"id": ids[0], "FirstName": "A"}, {"id": ids[1], "FirstName": "B"})
        },
    )
    assert all(r["success"] for r in updated)
    upserted = org.sf.restful(
        f"composite/sobjects/Contact/{EXT}",
        method="PATCH",
        json={"records": _records({EXT: "u1", "LastName": "U"}, {EXT: "u1", "LastName": "V"})},
    )
    assert [r["success"] for r in upserted] == [False, False]  # one external id twice
    upserted = org.sf.restful(
        f"composite/sobjects/Contact/{EXT}",
        method="PATCH",
        json={"records": _records({EXT: "u1", "LastName": "U"})},
    )
    assert upserted[0]["created"] is True
    deleted = org.sf.restful(
        "composite/sobjects", method="DELETE", params={"ids": ",".join(ids), "allOrNone": "false"}
    )
    assert [r["success"] for r in deleted] == [True, True]
    with pytest.raises(SalesforceMalformedRequest) as too_many:
        org.sf.restful(
            "composite/sobjects",
            method="POST",
            json={"records": _records(*({"LastName": f"n{i}"} for i in range(201)))},
        )
    assert _first_error(too_many)["errorCode"] == "EXCEEDED_ID_LIMIT"


# -- duplicate rules -----------------------------------------------------------------------------


def test_duplicate_rule_refuses_a_second_contact_with_the_same_email(org: Org) -> None:
    first = org.sf.Contact.create({"LastName": "One", "Email": "same@example.com"})["id"]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        org.sf.Contact.create({"LastName": "Two", "Email": "SAME@example.com"})
    error = _first_error(exc)
    assert error["errorCode"] == "DUPLICATES_DETECTED"
    assert error["message"] == "Use one of these records?"
    result = error["duplicateResult"]
    assert result["allowSave"] is True and result["duplicateRuleEntityType"] == "Contact"
    [match] = result["matchResults"]
    assert match["size"] == 1 and match["success"] is True
    record = match["matchRecords"][0]["record"]
    assert record == {
        "attributes": {"type": "Contact", "url": f"/services/data/v59.0/sobjects/Contact/{first}"},
        "Id": first,
    }
    # includeRecordDetails asks for the matched record's fields too.
    with pytest.raises(SalesforceMalformedRequest) as detailed:
        org.sf.Contact.create(
            {"LastName": "Two", "Email": "same@example.com"},
            headers={DUP_HEADER: "includeRecordDetails=true"},
        )
    matched = _first_error(detailed)["duplicateResult"]["matchResults"][0]["matchRecords"][0]
    assert matched["record"]["LastName"] == "One"
    # allowSave=true saves it (the rule's action is Allow, with an alert).
    saved = org.sf.Contact.create(
        {"LastName": "Two", "Email": "same@example.com"}, headers={DUP_HEADER: "allowSave=true"}
    )
    assert saved["success"] is True
    # A lead is matched with leads only; an edit only when it changes the email.
    assert org.sf.Lead.create({"LastName": "L", "Company": "C", "Email": "same@example.com"})
    other = org.sf.Contact.create({"LastName": "Other", "Email": "other@example.com"})["id"]
    assert org.sf.Contact.update(other, {"FirstName": "Still unique"}) == 204
    with pytest.raises(SalesforceMalformedRequest) as edit:
        org.sf.Contact.update(other, {"Email": "same@example.com"})
    assert _first_error(edit)["errorCode"] == "DUPLICATES_DETECTED"


def test_duplicate_rule_in_collections_is_terse(org: Org) -> None:
    org.sf.Contact.create({"LastName": "One", "Email": "c@example.com"})
    answer = org.sf.restful(
        "composite/sobjects",
        method="POST",
        json={"records": _records({"LastName": "Two", "Email": "c@example.com"})},
    )
    assert answer == [
        {
            "id": None,
            "success": False,
            "errors": [
                {
                    "statusCode": "DUPLICATES_DETECTED",
                    "message": "Use one of these records?",
                    "fields": [],
                }
            ],
        }
    ]
    allowed = org.sf.restful(
        "composite/sobjects",
        method="POST",
        json={"records": _records({"LastName": "Two", "Email": "c@example.com"})},
        headers={DUP_HEADER: "allowSave=true"},
    )
    assert allowed[0]["success"] is True


def test_duplicate_rules_switch(org: Org) -> None:
    admin = requests.Session()
    admin.trust_env = False

    def faults(body: dict[str, Any]) -> int:
        return admin.post(f"{org.url}/_sandbox/faults", json=body, timeout=5).status_code

    org.sf.Contact.create({"LastName": "One", "Email": "d@example.com"})
    assert faults({"duplicate_rules": "block"}) == 200
    with pytest.raises(SalesforceMalformedRequest) as blocked:
        org.sf.Contact.create(
            {"LastName": "Two", "Email": "d@example.com"}, headers={DUP_HEADER: "allowSave=true"}
        )
    assert _first_error(blocked)["duplicateResult"]["allowSave"] is False
    assert faults({"duplicate_rules": False}) == 200
    assert org.sf.Contact.create({"LastName": "Two", "Email": "d@example.com"})["success"]
    assert faults({"duplicate_rules": "sometimes"}) == 400
    assert faults({"duplicate_rules": True}) == 200
    assert org.sb.duplicate_rules == "alert"

"""HubSpotConnector against the HubSpot simulator over real loopback HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from syncd.config import HttpSettings, HubSettings, RateLimitSettings
from syncd.errors import AuthError, ConfigError, QuotaExhausted
from syncd.model import ErrorCategory, ObjectType, Record, WriteItem, WriteOp
from syncd.rules import Condition, Group, Op
from syncd.sandbox.common import bound_port, serve
from syncd.sandbox.hubspot.app import HubSpotSandbox, bulk_load, create_hubspot_app, seed_hubspot
from syncd.vendors.hubspot.client import HubSpotConnector
from syncd.vendors.protocols import HubConnector

TOKEN = "pat-na1-test-token"
UPSERT_EP = "POST /crm/v3/objects/{object}/batch/upsert"
SEARCH_EP = "POST /crm/v3/objects/{object}/search"

Start = Callable[..., Awaitable[tuple[HubSpotSandbox, str]]]


class RecordingConnector(HubSpotConnector):
    """Keeps the search bodies it sent, so tests can see how the date window moved."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.search_bodies: list[dict[str, Any]] = []

    async def search(self, hs_obj: str, body: dict[str, Any]) -> dict[str, Any]:
        self.search_bodies.append(body)
        return await super().search(hs_obj, body)


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    runners: list[web.AppRunner] = []

    async def _start(
        sb: HubSpotSandbox | None = None, *, rate_limit: tuple[int, float] | None = None
    ) -> tuple[HubSpotSandbox, str]:
        sb = sb or HubSpotSandbox(search_rate_limit=None)
        runner = await serve(create_hubspot_app(sb, token=TOKEN, rate_limit=rate_limit))
        runners.append(runner)
        return sb, f"http://127.0.0.1:{bound_port(runner)}"

    yield _start
    for r in runners:
        await r.cleanup()


def make(url: str, *, token: str = TOKEN, **kw: Any) -> RecordingConnector:
    settings = HubSettings(
        kind="hubspot",
        base_url=url,
        api_token=token,  # type: ignore[arg-type]
        rate_limit=kw.pop("rate_limit", RateLimitSettings(requests=10_000, per_seconds=1.0)),
        quota_reserve=kw.pop("quota_reserve", 0.10),
        http=HttpSettings(retry_attempts=5, retry_base_delay=0.01, retry_max_delay=0.05),
    )
    kw.setdefault("search_rate", (10_000, 1.0))
    return RecordingConnector(settings, **kw)


@pytest.fixture
async def conns() -> AsyncIterator[list[HubSpotConnector]]:
    made: list[HubSpotConnector] = []
    yield made
    for c in made:
        await c.close()


async def collect(
    conn: HubSpotConnector, obj: ObjectType, cursor: str | None, **kw: Any
) -> tuple[list[Record], str | None]:
    records: list[Record] = []
    last = cursor
    async for page in conn.changed_since(obj, cursor, **kw):
        records.extend(page.records)
        last = page.cursor
    return records, last


def contacts(n: int, prefix: str = "p") -> list[dict[str, Any]]:
    return [{"email": f"{prefix}{i}@example.com", "firstname": f"F{i}"} for i in range(n)]


# ---- reads -------------------------------------------------------------------------------
async def test_protocol_and_no_last_broadcast(start: Start, conns: list[HubSpotConnector]) -> None:
    _, url = await start()
    conn = make(url)
    conns.append(conn)
    assert isinstance(conn, HubConnector)
    assert conn.supports_last_broadcast is False
    with pytest.raises(ConfigError, match="not supported"):
        await conn.send_last_broadcast("1", ["2"])


async def test_paging_past_the_10000_cap_moves_the_window(
    start: Start, conns: list[HubSpotConnector]
) -> None:
    sb, url = await start()
    base = 1_700_000_000_000
    ids = bulk_load(sb, "contacts", contacts(10_450), start_ms=base, same_every=7)
    conn = make(url)
    conns.append(conn)
    records, cursor = await collect(conn, ObjectType.CONTACT, None)
    got = [r.id for r in records]
    assert len(got) == len(set(got)), "no record may be returned twice"
    assert set(got) == set(ids), "no record may be lost"
    assert cursor == str(base + (10_449 // 7))
    afters = [int(b.get("after", 0)) for b in conn.search_bodies]
    assert max(afters) < 10_000
    moved = [
        f["value"]
        for b in conn.search_bodies
        for g in b["filterGroups"]
        for f in g["filters"]
        if f["propertyName"] == "lastmodifieddate" and f["operator"] == "GTE"
    ]
    assert moved and int(moved[0]) > base, "a second window starting later was searched"
    # Oldest first: modification times never go backwards.
    stamps = [r.modified_at for r in records]
    assert stamps == sorted(stamps)  # type: ignore[type-var]


async def test_more_ties_than_a_window_are_walked_by_id(
    start: Start, conns: list[HubSpotConnector]
) -> None:
    sb, url = await start()
    base = 1_700_000_000_000
    same = bulk_load(sb, "contacts", contacts(450, "t"), start_ms=base, same_every=1000)
    later = bulk_load(sb, "contacts", contacts(30, "l"), start_ms=base + 5)
    conn = make(url, search_window_cap=200)
    conns.append(conn)
    records, cursor = await collect(conn, ObjectType.CONTACT, None)
    got = [r.id for r in records]
    assert len(got) == len(set(got))
    assert set(got) == set(same) | set(later)
    assert cursor == str(base + 5 + 29)


async def test_cursor_resumes_at_the_newest_time_seen(
    start: Start, conns: list[HubSpotConnector]
) -> None:
    sb, url = await start()
    base = 1_700_000_000_000
    ids = bulk_load(sb, "contacts", contacts(50), start_ms=base, step_ms=10)
    conn = make(url)
    conns.append(conn)
    records, cursor = await collect(conn, ObjectType.CONTACT, str(base + 200))
    # GTE the cursor: the record at exactly the cursor time is read again, none earlier.
    assert [r.id for r in records] == ids[20:]
    again, cursor2 = await collect(conn, ObjectType.CONTACT, cursor)
    assert [r.id for r in again] == [ids[-1]] and cursor2 == cursor


async def test_criteria_pushed_down_or_checked_locally(
    start: Start, conns: list[HubSpotConnector]
) -> None:
    sb, url = await start()
    rows = [
        {
            "email": f"c{i}@example.com",
            "lifecyclestage": "lead" if i % 2 else "customer",
            "firstname": f"Ann{i}" if i < 4 else "Bob",
        }
        for i in range(10)
    ]
    bulk_load(sb, "contacts", rows)
    conn = make(url)
    conns.append(conn)
    leads, _ = await collect(
        conn, ObjectType.CONTACT, None, criteria=Condition("lifecyclestage", Op.EQ, "lead")
    )
    assert {r.fields["email"] for r in leads} == {f"c{i}@example.com" for i in (1, 3, 5, 7, 9)}
    local, _ = await collect(
        conn,
        ObjectType.CONTACT,
        None,
        criteria=Group(
            "all",
            (
                Condition("firstname", Op.STARTS_WITH, "ann"),
                Condition("lifecyclestage", Op.EQ, "lead"),
            ),
        ),
    )
    assert {r.fields["email"] for r in local} == {"c1@example.com", "c3@example.com"}


async def test_get_by_ids_find_by_emails_and_tags(
    start: Start, conns: list[HubSpotConnector]
) -> None:
    sb, url = await start()
    ids = seed_hubspot(sb, contacts=5, companies=2)
    conn = make(url)
    conns.append(conn)
    first = sb.objects["contacts"][ids["contacts"][0]]
    sb.objects["contacts"][first.id].properties[sb.tag_property] = "added-to-salesforce-lead"
    got = await conn.get_by_ids(ObjectType.CONTACT, [first.id, "999999999"])
    assert [r.id for r in got] == [first.id]
    assert got[0].tags == frozenset({"added-to-salesforce-lead"})
    email = str(first.properties["email"])
    found = await conn.find_by_emails([f"  {email.upper()} ", "nobody@example.com"])
    assert list(found) == [email.lower()] and found[email.lower()].id == first.id


async def test_deleted_since(start: Start, conns: list[HubSpotConnector]) -> None:
    sb, url = await start()
    ids = bulk_load(sb, "contacts", contacts(5))
    sb.archive("contacts", ids[0])
    conn = make(url)
    conns.append(conn)
    deleted, cursor = await conn.deleted_since(ObjectType.CONTACT, None)
    assert [d.id for d in deleted] == [ids[0]]
    again, _ = await conn.deleted_since(ObjectType.CONTACT, cursor)
    assert again == []
    await asyncio.sleep(0.002)  # a later archive time than the cursor
    sb.archive("contacts", ids[1])
    later, _ = await conn.deleted_since(ObjectType.CONTACT, cursor)
    assert [d.id for d in later] == [ids[1]]


# ---- writes ------------------------------------------------------------------------------
async def test_250_records_take_exactly_3_batch_calls(
    start: Start, conns: list[HubSpotConnector]
) -> None:
    sb, url = await start()
    conn = make(url)
    conns.append(conn)
    items = [WriteItem({"email": f"w{i}@example.com", "firstname": f"W{i}"}) for i in range(250)]
    results = await conn.write(ObjectType.CONTACT, WriteOp.UPSERT, items)
    assert sb.requests[UPSERT_EP] == 3
    assert all(r.ok and r.created for r in results)
    for i, r in enumerate(results):
        assert sb.by_email(f"w{i}@example.com").id == r.id  # type: ignore[union-attr]
    again = await conn.write(ObjectType.CONTACT, WriteOp.UPSERT, items[:2])
    assert [(r.ok, r.created, r.id) for r in again] == [
        (True, False, results[0].id),
        (True, False, results[1].id),
    ]


async def test_207_partial_results_map_per_record_in_input_order(
    start: Start, conns: list[HubSpotConnector]
) -> None:
    sb, url = await start()
    sb.faults.fail_emails = {"refused@example.com"}
    conn = make(url)
    conns.append(conn)
    emails = [
        "a@example.com",
        "not-an-email",
        "b@example.com",
        "refused@example.com",
        "c@example.com",
    ]
    results = await conn.write(
        ObjectType.CONTACT, WriteOp.UPSERT, [WriteItem({"email": e}) for e in emails]
    )
    assert [r.ok for r in results] == [True, False, True, False, True]
    for bad in (results[1], results[3]):
        assert bad.error_category is ErrorCategory.VALIDATION
        assert bad.error_code == "INVALID_EMAIL"
        assert "is invalid" in (bad.error_message or "")
    for i in (0, 2, 4):
        assert sb.by_email(emails[i]).id == results[i].id  # type: ignore[union-attr]
    assert sb.requests[UPSERT_EP] == 1


async def test_create_conflict_is_a_duplicate_for_that_record_only(
    start: Start, conns: list[HubSpotConnector]
) -> None:
    sb, url = await start()
    existing = bulk_load(sb, "contacts", [{"email": "taken@example.com"}])[0]
    conn = make(url)
    conns.append(conn)
    items = [
        WriteItem({"email": e}) for e in ("n1@example.com", "taken@example.com", "n2@example.com")
    ]
    results = await conn.write(ObjectType.CONTACT, WriteOp.CREATE, items)
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error_category is ErrorCategory.DUPLICATE
    assert results[1].error_message == f"Contact already exists. Existing ID: {existing}"
    assert results[0].created and results[2].created


async def test_companies_match_on_domain_then_name(
    start: Start, conns: list[HubSpotConnector]
) -> None:
    sb, url = await start()
    acme, globex = bulk_load(
        sb, "companies", [{"name": "Acme", "domain": "acme.com"}, {"name": "Globex"}]
    )
    conn = make(url)
    conns.append(conn)
    items = [
        WriteItem({"name": "Acme Corp", "domain": "https://www.ACME.com/"}),
        WriteItem({"name": "globex"}),
        WriteItem({"name": "Initech", "domain": "initech.com"}),
    ]
    results = await conn.write(ObjectType.ACCOUNT, WriteOp.UPSERT, items)
    assert [(r.ok, r.id, r.created) for r in results[:2]] == [
        (True, acme, False),
        (True, globex, False),
    ]
    assert results[2].ok and results[2].created and results[2].id not in (acme, globex)
    assert sb.objects["companies"][acme].properties["name"] == "Acme Corp"


async def test_a_company_just_created_is_matched_not_created_again(
    start: Start, conns: list[HubSpotConnector]
) -> None:
    """HubSpot's search finds a new company only seconds later; the next write that needs it
    must not create a second one. The lag is 30 s here (a create 6 s) rather than the test
    clock's 3 s so that the second write surely runs while search cannot see the first."""
    sb, url = await start(HubSpotSandbox(search_rate_limit=None, search_lag=30.0))
    conn = make(url)
    conns.append(conn)
    first = await conn.write(
        ObjectType.ACCOUNT, WriteOp.UPSERT, [WriteItem({"name": "Acme", "domain": "acme.io"})]
    )
    assert first[0].ok and first[0].created
    found = await conn.lookup_ids("companies", "domain", ["acme.io"])
    assert found == {}  # search does not show it yet
    by_domain = await conn.write(
        ObjectType.ACCOUNT,
        WriteOp.UPSERT,
        [WriteItem({"name": "Acme Inc", "domain": "https://www.acme.io/"})],
    )
    # By name, as the last write left it (search would show no name at all yet).
    by_name = await conn.write(
        ObjectType.ACCOUNT, WriteOp.UPSERT, [WriteItem({"name": "acme inc"})]
    )
    assert [(r.ok, r.id, r.created) for r in by_domain + by_name] == [
        (True, first[0].id, False),
        (True, first[0].id, False),
    ]
    live = [r for r in sb.objects["companies"].values() if not r.archived]
    assert [r.properties["name"] for r in live] == ["acme inc"]
    # A remembered company deleted since is not matched: a read by id confirms each one.
    sb.archive("companies", str(first[0].id))
    third = await conn.write(
        ObjectType.ACCOUNT, WriteOp.UPSERT, [WriteItem({"name": "Acme", "domain": "acme.io"})]
    )
    assert third[0].ok and third[0].created and third[0].id != first[0].id


async def test_tags_on_the_multi_checkbox_property(
    start: Start, conns: list[HubSpotConnector]
) -> None:
    sb, url = await start()
    cid = bulk_load(sb, "contacts", [{"email": "t@example.com"}])[0]
    conn = make(url)
    conns.append(conn)
    await conn.add_tags(cid, ["added-to-salesforce-contact", "added-to-salesforce-lead"])
    assert await conn.get_tags(cid) == {"added-to-salesforce-contact", "added-to-salesforce-lead"}
    # A tag given on a write adds to the tags already there (never replaces them).
    res = await conn.write(
        ObjectType.CONTACT,
        WriteOp.UPSERT,
        [WriteItem({"email": "t@example.com", "tags": ["created-from-salesforce-lead"]})],
    )
    assert res[0].ok and res[0].id == cid
    assert sb.tags_of(cid) == [
        "added-to-salesforce-contact",
        "added-to-salesforce-lead",
        "created-from-salesforce-lead",
    ]
    await conn.remove_tags(cid, ["added-to-salesforce-lead"])
    assert await conn.get_tags(cid) == {
        "added-to-salesforce-contact",
        "created-from-salesforce-lead",
    }
    options = {o["value"] for o in sb.properties["contacts"][sb.tag_property].options}
    assert "created-from-salesforce-lead" in options


async def test_opted_out_contact_stays_opted_out(
    start: Start, conns: list[HubSpotConnector]
) -> None:
    sb, url = await start()
    a, b = bulk_load(sb, "contacts", [{"email": "in@example.com"}, {"email": "out@example.com"}])
    sb.opt_out(b)
    list_id = sb.create_list("newsletter")
    conn = make(url)
    conns.append(conn)
    results = await conn.subscribe(list_id, [a, b, "424242"])
    assert [(r.contact_id, r.ok, r.subscribed) for r in results] == [
        (a, True, True),
        (b, True, False),
        ("424242", False, False),
    ]
    assert set(sb.lists[list_id].members) == {a}
    # A re-sync that carries the old opt-in value cannot clear the opt-out.
    await conn.write(
        ObjectType.CONTACT,
        WriteOp.UPSERT,
        [WriteItem({"email": "out@example.com", "hs_email_optout": False, "firstname": "X"})],
    )
    assert sb.objects["contacts"][b].properties["hs_email_optout"] == "true"
    again = await conn.subscribe(list_id, [b])
    assert again[0].subscribed is False
    assert await conn.remove_from_list(list_id, [a, b]) == [a]  # b never joined
    assert sb.lists[list_id].members == {}
    await conn.restore_to_list(list_id, [a, b])  # the opted-out contact stays out
    assert set(sb.lists[list_id].members) == {a}


async def test_describe_and_primary_company(start: Start, conns: list[HubSpotConnector]) -> None:
    sb, url = await start()
    (cid,) = bulk_load(sb, "contacts", [{"email": "p@example.com"}])
    (coid,) = bulk_load(sb, "companies", [{"name": "Acme"}])
    conn = make(url)
    conns.append(conn)
    fields = {f.name: f for f in await conn.describe(ObjectType.CONTACT)}
    assert fields["email"].type == "string" and fields["lastmodifieddate"].type == "datetime"
    assert await conn.set_primary_companies(ObjectType.CONTACT, {cid: coid}) == 1
    assert sb.primary_company(cid) == coid
    assert await conn.set_primary_companies(ObjectType.CONTACT, {cid: coid}) == 0  # as it is
    # Re-pointed: the old company is no longer associated at all.
    (other,) = bulk_load(sb, "companies", [{"name": "Initech"}])
    assert await conn.set_primary_companies(ObjectType.CONTACT, {cid: other}) == 1
    assert sb.primary_company(cid) == other and (cid, coid) not in sb.associations
    (deal,) = bulk_load(sb, "deals", [{"dealname": "Big"}])
    assert await conn.set_primary_companies(ObjectType.OPPORTUNITY, {deal: coid}) == 1
    assert sb.associations[(deal, coid)] == {5, 341}


# ---- limits, faults and auth -------------------------------------------------------------
async def test_429_waits_at_least_the_interval(start: Start, conns: list[HubSpotConnector]) -> None:
    sb, url = await start(rate_limit=(3, 1.0))
    conn = make(url)
    conns.append(conn)
    for _ in range(4):
        await conn.check_auth()
    times = sb.request_times
    assert len(times) == 5  # the fourth call was refused once, then retried
    assert times[4] - times[3] >= 1.0


async def test_429_waits_at_least_retry_after(start: Start, conns: list[HubSpotConnector]) -> None:
    sb, url = await start()
    conn = make(url)
    conns.append(conn)
    sb.faults.apply({"fail_next": 1, "status": 429, "retry_after": 1.2})
    t0 = time.monotonic()
    await conn.check_auth()
    assert time.monotonic() - t0 >= 1.2


async def test_503_bursts_are_retried_then_succeed(
    start: Start, conns: list[HubSpotConnector]
) -> None:
    sb, url = await start()
    conn = make(url)
    conns.append(conn)
    sb.faults.apply({"fail_next": 3, "status": 503})
    results = await conn.write(
        ObjectType.CONTACT, WriteOp.UPSERT, [WriteItem({"email": "r@example.com"})]
    )
    assert results[0].ok
    assert sb.requests[UPSERT_EP] == 4


async def test_invalid_token_is_an_auth_error_with_the_vendor_body(
    start: Start, conns: list[HubSpotConnector]
) -> None:
    sb, url = await start()
    bad = make(url, token="pat-na1-wrong")
    conns.append(bad)
    with pytest.raises(AuthError) as info:
        await bad.check_auth()
    assert "INVALID_AUTHENTICATION" in str(info.value)
    assert "pat-na1-wrong" not in str(info.value)
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            f"{url}/crm/v3/objects/contacts", headers={"Authorization": "Bearer pat-na1-wrong"}
        ) as r,
    ):
        assert r.status == 401
        body = await r.json()
        assert body.pop("correlationId")  # HubSpot's error shape, 401s included
        assert body == {
            "status": "error",
            "message": "Authentication credentials not found.",
            "category": "INVALID_AUTHENTICATION",
        }
    good = make(url)
    conns.append(good)
    sb.faults.apply({"expire_tokens": True})
    with pytest.raises(AuthError, match="EXPIRED_AUTHENTICATION"):
        await good.check_auth()


async def test_quota_reserve_stops_writes(start: Start, conns: list[HubSpotConnector]) -> None:
    sb, url = await start(HubSpotSandbox(daily_limit=100, search_rate_limit=None))
    sb.daily_used = 89
    conn = make(url, quota_reserve=0.10)
    conns.append(conn)
    await conn.check_auth()
    quota = conn.quota()
    assert quota is not None and (quota.used, quota.limit) == (90, 100)
    with pytest.raises(QuotaExhausted):
        await conn.write(
            ObjectType.CONTACT, WriteOp.UPSERT, [WriteItem({"email": "q@example.com"})]
        )
    assert sb.requests[UPSERT_EP] == 0
    sb.faults.apply({"exhaust_quota": True})
    with pytest.raises(QuotaExhausted):
        await conn.check_auth()


async def test_search_has_its_own_client_side_limit(
    start: Start, conns: list[HubSpotConnector]
) -> None:
    sb, url = await start(HubSpotSandbox(search_rate_limit=(4, 1.0)))
    bulk_load(sb, "contacts", contacts(30))
    conn = make(url, search_rate=(4, 1.0), search_window_cap=200)
    conns.append(conn)
    for _ in range(6):
        await conn.lookup_ids("contacts", "email", ["p1@example.com"])
    assert sb.requests[SEARCH_EP] == 6  # never refused: the client paced itself


async def test_missing_tag_property_is_created(start: Start, conns: list[HubSpotConnector]) -> None:
    sb, url = await start()
    del sb.properties["contacts"][sb.tag_property]
    (cid,) = bulk_load(sb, "contacts", [{"email": "m@example.com"}])
    conn = make(url)
    conns.append(conn)
    await conn.add_tags(cid, ["added-to-salesforce-lead"])
    pdef = sb.properties["contacts"][sb.tag_property]
    assert (pdef.type, pdef.field_type) == ("enumeration", "checkbox")
    assert sb.tags_of(cid) == ["added-to-salesforce-lead"]


async def test_a_refused_batch_is_retried_one_record_per_call(
    start: Start, conns: list[HubSpotConnector]
) -> None:
    sb, url = await start()
    conn = make(url)
    conns.append(conn)
    # The same email twice makes HubSpot refuse the whole upsert ("Duplicate IDs").
    items = [
        WriteItem({"email": "same@example.com", "firstname": "A"}),
        WriteItem({"email": "other@example.com"}),
        WriteItem({"email": "SAME@example.com", "firstname": "B"}),
    ]
    results = await conn.write(ObjectType.CONTACT, WriteOp.UPSERT, items)
    assert all(r.ok for r in results)
    assert results[0].id == results[2].id and results[0].created and not results[2].created
    assert sb.requests[UPSERT_EP] == 4  # the refused call, then one per record
    assert sb.by_email("same@example.com").properties["firstname"] == "B"  # type: ignore[union-attr]


async def test_update_of_a_missing_record_fails_only_that_record(
    start: Start, conns: list[HubSpotConnector]
) -> None:
    sb, url = await start()
    (cid,) = bulk_load(sb, "contacts", [{"email": "u@example.com"}])
    conn = make(url)
    conns.append(conn)
    results = await conn.write(
        ObjectType.CONTACT,
        WriteOp.UPDATE,
        [WriteItem({"firstname": "Gone"}, id="999999"), WriteItem({"firstname": "Here"}, id=cid)],
    )
    assert [r.ok for r in results] == [False, True]
    assert results[0].error_code == "OBJECT_NOT_FOUND"
    assert sb.objects["contacts"][cid].properties["firstname"] == "Here"


async def test_write_with_lists_adds_members_and_keeps_opted_out_out(
    start: Start, conns: list[HubSpotConnector]
) -> None:
    sb, url = await start()
    c = make(url)
    conns.append(c)
    list_id = sb.create_list("Imported")
    first = await c.write(
        ObjectType.CONTACT,
        WriteOp.UPSERT,
        [WriteItem({"email": "out@x.io", "lastname": "Out"})],
        match_field="email",
    )
    assert first[0].ok and first[0].id
    sb.opt_out(first[0].id)
    items = [
        WriteItem({"email": e, "lastname": "L", "lists": [list_id]})
        for e in ("a@x.io", "b@x.io", "out@x.io")
    ]
    results = await c.write(ObjectType.CONTACT, WriteOp.UPSERT, items, match_field="email")
    assert all(r.ok for r in results)
    members = set(sb.lists[list_id].members)
    assert members == {results[0].id, results[1].id}
    assert "lists" not in sb.objects["contacts"][str(results[0].id)].properties

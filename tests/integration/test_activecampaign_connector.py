"""ActiveCampaignConnector against the ActiveCampaign simulator over real loopback HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from syncd.config import HttpSettings, HubSettings, RateLimitSettings
from syncd.errors import AuthError
from syncd.model import ErrorCategory, ObjectType, SyncTag, WriteItem, WriteOp
from syncd.sandbox.activecampaign.app import (
    ActiveCampaignSandbox,
    create_activecampaign_app,
    seed_activecampaign,
)
from syncd.sandbox.common import bound_port, serve
from syncd.vendors.activecampaign.answers import parse_ac_datetime
from syncd.vendors.activecampaign.bulk import (
    BULK_MAX,
    BULK_MAX_BYTES,
    _body,
    _BulkRow,
    _chunks,
)
from syncd.vendors.activecampaign.client import ActiveCampaignConnector
from syncd.vendors.protocols import HubConnector

TOKEN = "ac-test-token-0123456789"
FAST = RateLimitSettings(requests=10_000, per_seconds=1.0)


@dataclass
class Env:
    sandbox: ActiveCampaignSandbox
    base_url: str
    make: Callable[..., ActiveCampaignConnector]


def _settings(
    base_url: str, token: str = TOKEN, rate: RateLimitSettings | None = FAST
) -> HubSettings:
    return HubSettings(
        kind="activecampaign",
        base_url=base_url,
        api_token=token,  # type: ignore[arg-type]
        rate_limit=rate,
        http=HttpSettings(retry_attempts=5, retry_base_delay=0.02, retry_max_delay=0.1),
    )


@asynccontextmanager
async def _env(contacts: int, server_rate: tuple[int, float] | None) -> AsyncIterator[Env]:
    sb = ActiveCampaignSandbox()  # imports take AC's time, scaled (tests/timing.py)
    seed_activecampaign(sb, contacts=contacts)
    runner = await serve(create_activecampaign_app(sb, api_token=TOKEN, rate_limit=server_rate))
    base = f"http://127.0.0.1:{bound_port(runner)}/api/3"
    made: list[ActiveCampaignConnector] = []

    def make(**kw: Any) -> ActiveCampaignConnector:
        token = kw.pop("token", TOKEN)
        rate = kw.pop("rate", FAST)
        c = ActiveCampaignConnector(_settings(base, token, rate), import_poll_interval=0.02, **kw)
        made.append(c)
        return c

    try:
        yield Env(sb, base, make)
    finally:
        for c in made:
            await c.close()
        await runner.cleanup()


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with _env(50, None) as e:
        yield e


@pytest.fixture
async def limited_env() -> AsyncIterator[Env]:
    async with _env(5, (5, 1.0)) as e:
        yield e


def _req(sb: ActiveCampaignSandbox, endpoint: str) -> int:
    return sb.requests.get(endpoint, 0)


async def test_is_a_hub_connector(env: Env) -> None:
    c = env.make()
    assert isinstance(c, HubConnector)
    assert c.supports_last_broadcast is True
    assert c.quota() is None


async def test_paging_over_10000_contacts_loses_and_repeats_nothing() -> None:
    async with _env(10_050, None) as env:
        c = env.make()
        pages = [p async for p in c.changed_since(ObjectType.CONTACT, None)]
        ids = [r.id for p in pages for r in p.records]
        assert len(ids) == len(set(ids)) == 10_050
        assert set(ids) == {str(i) for i in env.sandbox.contacts}
        # tags come along, exactly as the account has them
        tagged = {r.id: r.tags for p in pages for r in p.records if r.tags}
        expected = {
            str(cid): frozenset(str(env.sandbox.tags[t]["tag"]) for t in tags)
            for cid, tags in env.sandbox.tags_of.items()
            if tags
        }
        assert tagged == expected
        # limit 100, one tag query per sync tag per page: documented cost
        assert _req(env.sandbox, "GET /api/3/contacts") == 101 * (1 + len(SyncTag))
        # resuming from a mid-read cursor continues the same read
        mid = pages[40].cursor
        rest = [
            r.id
            for p in [p async for p in c.changed_since(ObjectType.CONTACT, mid)]
            for r in p.records
        ]
        assert rest == ids[4100:]
        # the final cursor picks up later changes
        final = pages[-1].cursor
        sb = env.sandbox
        target = sb.contacts[77]
        sb.apply_contact(target, {"firstName": "Changed"})
        later = [
            r
            for p in [p async for p in c.changed_since(ObjectType.CONTACT, final)]
            for r in p.records
        ]
        changed = {r.id: r for r in later}
        assert changed["77"].fields["firstName"] == "Changed"
        # besides it, only the overlap window (1 s before the cursor) is read again
        edge = parse_ac_datetime(final)
        assert edge is not None
        for r in later:
            assert r.id == "77" or (r.modified_at and r.modified_at >= edge - timedelta(seconds=1))


async def test_600_records_take_exactly_3_bulk_imports(env: Env) -> None:
    c = env.make()
    items = [
        WriteItem({"email": f"Bulk{i}@Example.com ", "firstName": f"B{i}", "Company": "Acme"})
        for i in range(600)
    ]
    results = await c.write(ObjectType.CONTACT, WriteOp.UPSERT, items)
    assert _req(env.sandbox, "POST /api/3/import/bulk_import") == 3
    assert all(r.ok for r in results)
    for i, r in enumerate(results):
        contact = env.sandbox.contact_by_email(f"bulk{i}@example.com")
        assert contact is not None and r.id == str(contact.id)
        assert contact.field_values[1] == "Acme"


async def test_bulk_results_say_which_contacts_were_created(env: Env) -> None:
    c = env.make()
    old = await c.write(
        ObjectType.CONTACT,
        WriteOp.UPSERT,
        [WriteItem({"email": f"old{i}@x.io"}) for i in range(30)],
    )
    assert all(r.created for r in old)
    mixed = [WriteItem({"email": f"old{i}@x.io"}) for i in range(10)] + [
        WriteItem({"email": f"new{i}@x.io"}) for i in range(25)
    ]
    results = await c.write(ObjectType.CONTACT, WriteOp.UPSERT, mixed)
    assert [r.created for r in results] == [False] * 10 + [True] * 25


async def test_an_import_that_updates_contacts_reads_their_ids_100_at_a_time(env: Env) -> None:
    """A dbsync of a table whose people are already contacts: AC lists none of them in the
    import's result; their ids come from the contacts changed since the import was sent,
    100 a read, not one read per row."""
    sb = env.sandbox
    c = env.make()
    existing = [sb.insert_contact(f"old{i}@x.io") for i in range(240)]
    reads = _req(sb, "GET /api/3/contacts")
    items = [WriteItem({"email": p.email, "firstName": "Again"}) for p in existing]
    results = await c.write(ObjectType.CONTACT, WriteOp.UPSERT, items)
    assert [r.id for r in results] == [str(p.id) for p in existing]
    assert not any(r.created for r in results)
    assert _req(sb, "GET /api/3/contacts") - reads <= 3  # 240 updated: 3 pages


async def test_updates_of_many_linked_contacts_go_in_bulk_imports(env: Env) -> None:
    """A pull's updates by id: one import per 250 and one email read per 100, not a PUT
    each; an email change, a cleared field or a contact gone stay on PUT by id."""
    sb = env.sandbox
    c = env.make()
    people = [sb.insert_contact(f"p{i}@x.io", phone="1") for i in range(300)]
    before = len(sb.contacts)
    items = [
        WriteItem({"firstName": f"New{i}", "phone": "2"}, str(p.id)) for i, p in enumerate(people)
    ]
    items[5] = WriteItem({"email": "moved@x.io", "firstName": "Moved"}, str(people[5].id))
    items[6] = WriteItem({"phone": ""}, str(people[6].id))
    items.append(WriteItem({"firstName": "Ghost"}, "999999"))
    puts, imports = _req(sb, "PUT /api/3/contacts/{id}"), _req(sb, "POST /api/3/import/bulk_import")
    reads = _req(sb, "GET /api/3/contacts")
    results = await c.write(ObjectType.CONTACT, WriteOp.UPDATE, items)
    assert _req(sb, "POST /api/3/import/bulk_import") - imports == 2  # 298 rows: 250 + 48
    assert _req(sb, "GET /api/3/contacts") - reads == 4  # the current emails of 301 ids
    assert _req(sb, "PUT /api/3/contacts/{id}") - puts == 3  # moved, cleared, gone
    for i, p in enumerate(people):
        res, now = results[i], sb.contacts[p.id]
        assert res.ok and res.id == str(p.id) and not res.created, (i, res)
        if i not in (5, 6):
            assert (now.first_name, now.phone, now.email) == (f"New{i}", "2", f"p{i}@x.io")
    assert sb.contacts[people[5].id].email == "moved@x.io"
    assert sb.contacts[people[6].id].phone == ""
    assert not results[-1].ok
    assert len(sb.contacts) == before  # nothing created


async def test_import_results_pair_rows_by_email_not_position(env: Env) -> None:
    """AC lists only the contacts an import created, in no order (the simulator shuffles
    them): each row still gets its own contact's id, created ones are told apart, and the
    reads cost one per 100 created contacts plus one per updated row whose id was not given."""
    sb = env.sandbox
    c = env.make()
    known = [sb.insert_contact(f"known{i}@x.io") for i in range(5)]
    unknown = [sb.insert_contact(f"unknown{i}@x.io") for i in range(3)]
    items = (
        [WriteItem({"email": f"fresh{i}@x.io"}) for i in range(120)]
        + [WriteItem({"email": k.email, "firstName": "K"}, str(k.id)) for k in known]
        + [WriteItem({"email": u.email.upper()}) for u in unknown]
    )
    reads = _req(sb, "GET /api/3/contacts")
    results = await c.write(ObjectType.CONTACT, WriteOp.UPSERT, items)
    for item, r in zip(items, results, strict=True):
        contact = sb.contact_by_email(str(item.fields["email"]))
        assert contact is not None and r.ok and r.id == str(contact.id)
    assert [r.created for r in results] == [True] * 120 + [False] * 8
    assert sb.contacts[known[0].id].first_name == "K"
    # 120 created: 2 reads by ids; 3 updated without an id: one read of what changed since
    assert _req(sb, "GET /api/3/contacts") - reads == 2 + 1


async def test_a_caller_that_needs_no_ids_is_spared_the_reads_of_them(env: Env) -> None:
    """need_ids=False (a dbsync that neither deletes nor sends the last broadcast): an import
    that created every accepted row costs no read, and one that created some reads only the
    pairing of the created ids (one per 100); created rows are still told apart."""
    sb = env.sandbox
    c = env.make()
    reads = _req(sb, "GET /api/3/contacts")
    fresh = [WriteItem({"email": f"n{i}@x.io"}) for i in range(130)] + [
        WriteItem({"email": "not an email"})
    ]
    results = await c.write(ObjectType.CONTACT, WriteOp.UPSERT, fresh, need_ids=False)
    assert [(r.ok, r.created, r.id) for r in results[:-1]] == [(True, True, None)] * 130
    assert not results[-1].ok
    assert sb.contact_by_email("n129@x.io") is not None
    assert _req(sb, "GET /api/3/contacts") == reads  # 130 created of 130 accepted: no read

    known = sb.insert_contact("known@x.io")
    mixed = (
        [WriteItem({"email": f"n{i}@x.io", "firstName": "Again"}) for i in range(20)]
        + [WriteItem({"email": known.email, "firstName": "K"}, str(known.id))]
        + [WriteItem({"email": f"m{i}@x.io"}) for i in range(110)]
    )
    results = await c.write(ObjectType.CONTACT, WriteOp.UPSERT, mixed, need_ids=False)
    assert [r.created for r in results] == [False] * 21 + [True] * 110
    assert [r.id for r in results[:21]] == [None] * 20 + [str(known.id)]
    for i, r in enumerate(results[21:]):
        made = sb.contact_by_email(f"m{i}@x.io")
        assert made is not None and r.id == str(made.id)
    assert sb.contact_by_email("n3@x.io").first_name == "Again"  # type: ignore[union-attr]
    # 110 created among 131: their ids paired in 2 reads; nothing read for the updated
    assert _req(sb, "GET /api/3/contacts") - reads == 2

    again = await c.write(ObjectType.CONTACT, WriteOp.UPSERT, mixed[:21], need_ids=False)
    assert [r.created for r in again] == [False] * 21
    assert _req(sb, "GET /api/3/contacts") - reads == 2  # none created: no read
    assert _req(sb, "POST /api/3/import/bulk_import") == 3


@pytest.mark.parametrize("ending", ["failed", "interrupted"])
async def test_failed_and_interrupted_imports_fail_their_rows(env: Env, ending: str) -> None:
    """An import AC ends as failed or interrupted (and will not retry) is not waited on
    forever: each of its rows fails, transiently, saying so; the next import completes."""
    sb = env.sandbox
    sb.apply_faults({"import_outcome": ending, "import_outcome_next": 1})
    c = env.make(import_timeout=30.0)
    items = [WriteItem({"email": f"{ending}{i}@x.io"}) for i in range(40)]
    results = await c.write(ObjectType.CONTACT, WriteOp.UPSERT, items)
    assert {r.error_code for r in results} == {f"IMPORT_{ending.upper()}"}
    assert all(r.error_category is ErrorCategory.TRANSIENT for r in results)
    assert f"ended '{ending}'" in (results[0].error_message or "")
    again = await c.write(ObjectType.CONTACT, WriteOp.UPSERT, items)
    assert all(r.ok for r in again)
    for item, r in zip(items, again, strict=True):
        contact = sb.contact_by_email(str(item.fields["email"]))
        assert contact is not None and r.id == str(contact.id)


async def test_a_large_batch_with_few_valid_rows_is_written_contact_by_contact(env: Env) -> None:
    """Over the bulk threshold by count, under it once invalid rows are set aside: no import
    of a handful of contacts, but the same per-row results, tags and list as in bulk."""
    sb = env.sandbox
    lid = sb.next_id("list")
    sb.lists[lid] = {"name": "Few", "stringid": "few", "sender_reminder": ""}
    c = env.make()
    items = [
        WriteItem({"email": f"broken{i}.example.com", "lists": [str(lid)]}) for i in range(20)
    ] + [
        WriteItem({"email": f"few{i}@example.com", "tags": ["vip"], "lists": [str(lid)]})
        for i in range(5)
    ]
    results = await c.write(ObjectType.CONTACT, WriteOp.UPSERT, items)
    assert _req(sb, "POST /api/3/import/bulk_import") == 0
    assert _req(sb, "POST /api/3/contact/sync") == 5
    assert [r.error_code for r in results[:20]] == ["INVALID_EMAIL"] * 20
    for i, r in enumerate(results[20:]):
        contact = sb.contact_by_email(f"few{i}@example.com")
        assert contact is not None and r.ok and r.created and r.id == str(contact.id)
        assert [sb.tags[t]["tag"] for t in sb.tags_of[contact.id]] == ["vip"]
        assert sb.memberships[(contact.id, lid)]["status"] == 1


async def test_per_record_failures_map_back_in_input_order(env: Env) -> None:
    env.sandbox.faults.fail_emails = {"reject3@example.com", "reject17@example.com"}
    c = env.make()
    items = []
    for i in range(30):
        if i == 5:
            items.append(WriteItem({"email": "not-an-email"}))
        elif i == 9:
            items.append(WriteItem({"email": f"row{i}@example.com", "NoSuchField": "x"}))
        elif i in (3, 17):
            items.append(WriteItem({"email": f"reject{i}@example.com"}))
        else:
            items.append(WriteItem({"email": f"row{i}@example.com"}))
    results = await c.write(ObjectType.CONTACT, WriteOp.UPSERT, items)
    assert len(results) == 30
    bad = {i: r for i, r in enumerate(results) if not r.ok}
    assert set(bad) == {3, 5, 9, 17}
    assert bad[5].error_category is ErrorCategory.VALIDATION
    assert bad[9].error_category is ErrorCategory.MAPPING
    assert bad[3].error_category is ErrorCategory.REJECTED
    assert "reject3@example.com" in (bad[3].error_message or "")
    for i, r in enumerate(results):
        if r.ok:
            assert r.id == str(env.sandbox.by_email[f"row{i}@example.com"])
    # the small path (contact/sync) maps AC's 422 the same way
    small = await c.write(
        ObjectType.CONTACT,
        WriteOp.UPSERT,
        [WriteItem({"email": "ok1@example.com"}), WriteItem({"email": "reject3@example.com"})],
    )
    assert small[0].ok and small[0].created
    assert not small[1].ok and small[1].error_category is ErrorCategory.VALIDATION
    assert "not valid" in (small[1].error_message or "")


async def test_client_rate_limiter_keeps_5_per_second(limited_env: Env) -> None:
    c = limited_env.make(rate=None)  # the AC default: 5 per second
    for _ in range(13):
        await c.check_auth()
    times = sorted(limited_env.sandbox.request_times)
    assert len(times) == 13  # no 429 ever came back, so nothing was retried
    for i in range(len(times) - 5):
        assert times[i + 5] - times[i] >= 1.0


async def test_429_waits_at_least_retry_after(limited_env: Env) -> None:
    sb = limited_env.sandbox
    sb.faults.apply({"fail_next": 1, "status": 429, "retry_after": 1})
    c = limited_env.make(rate=None)
    await c.check_auth()
    assert len(sb.request_times) == 2
    assert sb.request_times[1] - sb.request_times[0] >= 1.0


async def test_503_bursts_are_retried(env: Env) -> None:
    env.sandbox.faults.apply({"fail_next": 3, "status": 503})
    c = env.make()
    records = await c.get_by_ids(ObjectType.CONTACT, ["1", "2", "999999"])
    assert sorted(r.id for r in records) == ["1", "2"]


async def test_bad_token_and_revoked_auth_raise_auth_error(env: Env) -> None:
    with pytest.raises(AuthError) as info:
        await env.make(token="wrong-token").check_auth()
    assert "not authorized" in str(info.value)
    assert "wrong-token" not in str(info.value)
    good = env.make()
    await good.check_auth()
    env.sandbox.faults.apply({"revoke_auth": True})
    with pytest.raises(AuthError):
        await good.write(ObjectType.CONTACT, WriteOp.UPSERT, [WriteItem({"email": "a@b.co"})])


async def test_unsubscribed_contacts_stay_unsubscribed(env: Env) -> None:
    sb = env.sandbox
    c = env.make()
    a, b = sb.contacts[1], sb.contacts[2]
    sb.set_membership(a.id, 2, 1, keep_unsub=False)
    sb.set_membership(a.id, 2, 2, keep_unsub=False)
    results = await c.subscribe("2", [str(a.id), str(b.id)])
    assert [(r.contact_id, r.ok, r.subscribed) for r in results] == [
        (str(a.id), True, False),
        (str(b.id), True, True),
    ]
    assert sb.memberships[(a.id, 2)]["status"] == 2
    # re-sync through both write paths, asking for the list each time
    await c.write(
        ObjectType.CONTACT, WriteOp.UPSERT, [WriteItem({"email": a.email, "lists": ["2"]})]
    )
    assert sb.memberships[(a.id, 2)]["status"] == 2
    many = [WriteItem({"email": a.email, "lists": ["2"]})] + [
        WriteItem({"email": f"l{i}@example.com", "lists": ["2"]}) for i in range(25)
    ]
    results2 = await c.write(ObjectType.CONTACT, WriteOp.UPSERT, many)
    assert all(r.ok for r in results2)
    assert sb.memberships[(a.id, 2)]["status"] == 2
    new_id = sb.by_email["l0@example.com"]
    assert sb.memberships[(new_id, 2)]["status"] == 1


async def test_tags_add_and_remove_are_idempotent(env: Env) -> None:
    sb = env.sandbox
    c = env.make()
    cid = "3"
    tags = [str(SyncTag.ADDED_TO_SF_LEAD), "brand-new-tag"]
    before = set(sb.tags_of.get(3, {}))
    await c.add_tags(cid, tags)
    await c.add_tags(cid, tags)
    assert _req(sb, "POST /api/3/tags") == 1  # only the missing tag, only once
    names = {str(sb.tags[t]["tag"]) for t in sb.tags_of[3]}
    assert set(tags) <= names
    assert len(sb.tags_of[3]) == len(before | {sb.tag_by_name(t) for t in tags})
    assert str(SyncTag.ADDED_TO_SF_LEAD) in await c.get_tags(cid)
    await c.remove_tags(cid, tags)
    await c.remove_tags(cid, tags)
    names = {str(sb.tags[t]["tag"]) for t in sb.tags_of.get(3, {})}
    assert not set(tags) & names
    assert str(SyncTag.ADDED_TO_SF_LEAD) not in await c.get_tags(cid)


async def test_duplicate_create_is_a_duplicate_record_error(env: Env) -> None:
    c = env.make()
    existing = env.sandbox.contacts[4].email
    results = await c.write(
        ObjectType.CONTACT,
        WriteOp.CREATE,
        [WriteItem({"email": existing.upper()}), WriteItem({"email": "fresh@example.com"})],
    )
    assert results[0].error_category is ErrorCategory.DUPLICATE
    assert results[0].error_message == "Email address already exists in the system"
    assert results[1].ok and results[1].created


async def test_find_by_emails_and_get_by_ids(env: Env) -> None:
    c = env.make()
    sb = env.sandbox
    e1, e2 = sb.contacts[5].email, sb.contacts[6].email
    found = await c.find_by_emails([f"  {e1.upper()} ", e2, "nobody@example.com"])
    assert set(found) == {e1.lower(), e2.lower()}
    assert found[e1.lower()].id == "5"
    recs = await c.get_by_ids(ObjectType.CONTACT, ["6"], fields=["company"])
    assert recs[0].fields["company"] == sb.contacts[6].field_values[1]


async def test_deleted_since_and_last_broadcast(env: Env) -> None:
    sb = env.sandbox
    c = env.make()
    async with aiohttp.ClientSession() as s:
        r = await s.delete(f"{env.base_url}/contacts/8", headers={"Api-Token": TOKEN})
        assert r.status == 200
    deleted, cursor = await c.deleted_since(ObjectType.CONTACT, "2020-01-01T00:00:00-05:00")
    assert [d.id for d in deleted] == ["8"] and cursor
    assert await c.get_by_ids(ObjectType.CONTACT, ["8"]) == []
    # last broadcast reaches active members only
    sb.set_membership(10, 3, 1, keep_unsub=False)
    sb.set_membership(11, 3, 2, keep_unsub=False)
    await c.send_last_broadcast("3", ["10", "11", "12"])
    assert [(lid, cid) for _, lid, cid in sb.broadcasts] == [(3, 10)]
    assert sb.memberships[(11, 3)]["status"] == 2


async def test_accounts_deals_and_describe(env: Env) -> None:
    c = env.make()
    sb = env.sandbox
    first = await c.write(
        ObjectType.ACCOUNT,
        WriteOp.UPSERT,
        [WriteItem({"name": "Umbrella Corp"})],
        match_field="name",
    )
    again = await c.write(
        ObjectType.ACCOUNT,
        WriteOp.UPSERT,
        [WriteItem({"name": "umbrella corp", "accountUrl": "https://u.example"})],
        match_field="name",
    )
    assert first[0].ok and first[0].created and again[0].id == first[0].id
    assert sum(1 for a in sb.accounts.values() if a["name"].lower() == "umbrella corp") == 1
    deal = await c.write(
        ObjectType.OPPORTUNITY,
        WriteOp.UPSERT,
        [
            WriteItem({"title": "Big", "value": "10000", "currency": "usd"}),
            WriteItem({"title": "x"}),
        ],
    )
    assert deal[0].ok and not deal[1].ok
    assert deal[1].error_category is ErrorCategory.VALIDATION
    upd = await c.write(
        ObjectType.OPPORTUNITY, WriteOp.UPDATE, [WriteItem({"stage": "2"}, id=deal[0].id)]
    )
    assert upd[0].ok and sb.deals[int(deal[0].id or 0)]["stage"] == "2"
    fields = {f.name: f for f in await c.describe(ObjectType.CONTACT)}
    assert fields["email"].required and "company" in fields and "lead_source" in fields


async def test_contact_updated_behind_a_running_read_is_not_skipped(env: Env) -> None:
    sb = env.sandbox
    for i in range(200):
        sb.insert_contact(f"extra{i}@example.com")
    c = env.make()
    reader = c.changed_since(ObjectType.CONTACT, None)
    first = await anext(reader)
    assert len(first.records) == 100
    # while the read is on later pages, an early contact changes; later ones are newer still
    sb.apply_contact(sb.contacts[2], {"firstName": "Behind"})
    sb.apply_contact(sb.contacts[240], {"firstName": "Ahead"})
    rest = [p async for p in reader]
    final = rest[-1].cursor
    again = [
        r for p in [p async for p in c.changed_since(ObjectType.CONTACT, final)] for r in p.records
    ]
    assert "2" in {r.id for r in again}


def test_bulk_chunks_stay_under_the_body_limit_and_keep_every_row_in_order() -> None:
    """A run of 250 rows over AC's body limit is split by size; each chunk's body is the
    JSON document of its entries."""

    def row(i: int, entry: dict[str, Any]) -> _BulkRow:
        return _BulkRow(i, str(entry["email"]), json.dumps(entry, separators=(",", ":")), None)

    big = [
        row(i, {"email": f"p{i}@example.com", "fields": [{"id": 1, "value": "x" * 3000}]})
        for i in range(300)
    ]
    small = [row(i, {"email": f"s{i}@example.com"}) for i in range(260)]
    for rows in (big, small):
        chunks = _chunks(rows)
        assert [r.pos for c in chunks for r in c] == [r.pos for r in rows]
        for chunk in chunks:
            body = _body(chunk)
            assert 0 < len(chunk) <= BULK_MAX
            assert len(body) <= BULK_MAX_BYTES
            assert json.loads(body) == {"contacts": [json.loads(r.entry) for r in chunk]}
    assert len(_chunks(big)) > 2  # 300 rows of ~3 kB: split by size, not only by count
    assert sum(len(_body(c)) for c in _chunks(big)[:-1]) > (len(_chunks(big)) - 1) * 370_000
    assert [len(c) for c in _chunks(small)] == [250, 10]

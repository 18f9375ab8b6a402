"""SalesforceConnector against the Salesforce simulator over real loopback HTTP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from syncd.config import CrmSettings, HttpSettings
from syncd.errors import AuthError, ConfigError, QuotaExhausted
from syncd.model import ErrorCategory, ObjectType, WriteItem, WriteOp
from syncd.rules import Condition, Group, Op
from syncd.sandbox.common import bound_port, serve
from syncd.sandbox.salesforce.app import (
    SalesforceSandbox,
    bulk_insert_contacts,
    create_salesforce_app,
    seed_salesforce,
)
from syncd.sandbox.salesforce.soql import now_utc
from syncd.vendors.protocols import CrmConnector
from syncd.vendors.salesforce.answers import parse_sf_datetime
from syncd.vendors.salesforce.client import SalesforceConnector

SECRET = "s3cr3t-client-secret-value"
FAST = HttpSettings(retry_attempts=5, retry_base_delay=0.01, retry_max_delay=0.05)


@pytest.fixture
async def sandbox() -> AsyncIterator[tuple[SalesforceSandbox, str]]:
    sb = SalesforceSandbox(client_id="cid", client_secret=SECRET, refresh_token="rt-123")
    runner = await serve(create_salesforce_app(sb))
    try:
        yield sb, f"http://127.0.0.1:{bound_port(runner)}"
    finally:
        await runner.cleanup()


ConnFactory = Callable[..., SalesforceConnector]


@pytest.fixture
async def make_conn(
    sandbox: tuple[SalesforceSandbox, str],
) -> AsyncIterator[ConnFactory]:
    _, base = sandbox
    made: list[SalesforceConnector] = []

    def factory(**overrides: Any) -> SalesforceConnector:
        values: dict[str, Any] = {
            "login_url": base,
            "client_id": "cid",
            "client_secret": SECRET,
            "http": FAST,
        }
        values.update(overrides)
        conn = SalesforceConnector(CrmSettings(**values))
        made.append(conn)
        return conn

    yield factory
    for conn in made:
        await conn.close()


def contact(i: int, **extra: Any) -> WriteItem:
    fields = {"LastName": f"Last {i}", "Email": f"c{i}@example.com", "Syncd_Hub_Id__c": f"h{i}"}
    fields.update(extra)
    return WriteItem(fields)


async def test_implements_protocol(make_conn: ConnFactory) -> None:
    assert isinstance(make_conn(), CrmConnector)


async def test_paging_over_10000_records_loses_and_repeats_nothing(
    sandbox: tuple[SalesforceSandbox, str], make_conn: ConnFactory
) -> None:
    sb, _ = sandbox
    ids = bulk_insert_contacts(sb, 10_500)
    conn = make_conn()
    pages = [p async for p in conn.changed_since(ObjectType.CONTACT, None, fields=["Email"])]
    got = [r.id for p in pages for r in p.records]
    assert len(pages) == 6
    assert len(got) == len(set(got)) == 10_500
    assert set(got) == set(ids)
    cursors = [parse_sf_datetime(p.cursor or "") for p in pages]
    assert cursors == sorted(cursors)
    assert cursors[-1] == max(r["SystemModstamp"] for r in sb.records["Contact"].values())
    # Resuming from a page's cursor yields the records after it, and again those that share
    # the cursor's second (SystemModstamp has whole seconds: one saved later in that second
    # has the same stamp), never fewer.
    rest = [
        r.id
        async for p in conn.changed_since(ObjectType.CONTACT, pages[2].cursor)
        for r in p.records
    ]
    stamps = {r["Id"]: r["SystemModstamp"] for r in sb.records["Contact"].values()}
    cut = parse_sf_datetime(pages[2].cursor or "")
    assert rest == [i for i in got if stamps[i] >= cut]
    assert set(got[6000:]) <= set(rest)


async def test_450_records_take_exactly_3_collection_calls(
    sandbox: tuple[SalesforceSandbox, str], make_conn: ConnFactory
) -> None:
    sb, _ = sandbox
    conn = make_conn()
    results = await conn.write(ObjectType.CONTACT, WriteOp.UPSERT, [contact(i) for i in range(450)])
    assert sb.collection_calls() == 3
    assert len(results) == 450 and all(r.ok and r.created for r in results)
    assert sb.count("Contact") == 450


async def test_partial_failures_map_per_record_in_input_order(
    sandbox: tuple[SalesforceSandbox, str], make_conn: ConnFactory
) -> None:
    sb, _ = sandbox
    sb.faults.fail_emails = {"blocked@example.com"}
    sb.insert("Contact", {"LastName": "Existing", "Syncd_Hub_Id__c": "taken"})
    conn = make_conn()
    items = [
        contact(1),
        WriteItem({"Email": "nolast@example.com", "Syncd_Hub_Id__c": "h2"}),
        contact(3, Email="not-an-email"),
        contact(4, Email="blocked@example.com"),
        contact(5),
    ]
    res = await conn.write(ObjectType.CONTACT, WriteOp.UPSERT, items)
    assert [r.ok for r in res] == [True, False, False, False, True]
    assert [r.error_code for r in res] == [
        None,
        "REQUIRED_FIELD_MISSING",
        "INVALID_EMAIL_ADDRESS",
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        None,
    ]
    assert {r.error_category for r in res[1:4]} == {ErrorCategory.VALIDATION}
    assert res[1].error_message and "LastName" in res[1].error_message
    created = await conn.write(
        ObjectType.CONTACT, WriteOp.CREATE, [contact(6, Syncd_Hub_Id__c="taken"), contact(7)]
    )
    assert created[0].error_code == "DUPLICATE_VALUE"
    assert created[0].error_category is ErrorCategory.DUPLICATE
    assert created[1].ok and created[1].created
    dup = await conn.write(ObjectType.CONTACT, WriteOp.UPSERT, [contact(8), contact(8)])
    assert [r.error_category for r in dup] == [ErrorCategory.DUPLICATE] * 2


async def test_converted_lead_update_is_reported(
    sandbox: tuple[SalesforceSandbox, str], make_conn: ConnFactory
) -> None:
    sb, _ = sandbox
    lead = sb.insert("Lead", {"LastName": "L", "Company": "C"})
    other = sb.insert("Lead", {"LastName": "M", "Company": "C"})
    sb.convert_lead(lead["Id"])
    res = await make_conn().write(
        ObjectType.LEAD,
        WriteOp.UPDATE,
        [WriteItem({"Title": "x"}, id=lead["Id"]), WriteItem({"Title": "y"}, id=other["Id"])],
    )
    assert res[0].error_category is ErrorCategory.CONVERTED_LEAD
    assert res[0].error_code == "CANNOT_UPDATE_CONVERTED_LEAD"
    assert res[1].ok and not res[1].created
    assert sb.records["Lead"][other["Id"]]["Title"] == "y"


async def test_lock_errors_retry_only_those_records(
    sandbox: tuple[SalesforceSandbox, str], make_conn: ConnFactory
) -> None:
    sb, _ = sandbox
    sb.locked_emails = {"c1@example.com": 2, "c2@example.com": 100}
    conn = make_conn()
    res = await conn.write(ObjectType.CONTACT, WriteOp.UPSERT, [contact(0), contact(1), contact(2)])
    assert res[0].ok and res[1].ok
    assert res[2].error_category is ErrorCategory.TRANSIENT
    assert res[2].error_code == "UNABLE_TO_LOCK_ROW"
    # First call + retries: c2 was tried 1 + lock_retries times, c1 three times.
    assert sb.collection_calls() == 1 + conn.lock_retries
    assert len(sb.writes_for("Contact")) == 2


async def test_429_waits_at_least_retry_after(
    sandbox: tuple[SalesforceSandbox, str], make_conn: ConnFactory
) -> None:
    sb, _ = sandbox
    conn = make_conn()
    await conn.start()
    sb.faults.apply({"fail_next": 1, "status": 429, "retry_after": 0.4})
    started = time.monotonic()
    await conn.check_auth()
    assert time.monotonic() - started >= 0.4
    assert sb.requests["GET /services/data/{ver}/limits"] == 2


async def test_burst_of_503_is_retried_then_succeeds(
    sandbox: tuple[SalesforceSandbox, str], make_conn: ConnFactory
) -> None:
    sb, _ = sandbox
    conn = make_conn()
    await conn.start()
    sb.faults.apply({"fail_next": 3, "status": 503})
    res = await conn.write(ObjectType.CONTACT, WriteOp.UPSERT, [contact(1)])
    assert res[0].ok
    assert sb.collection_calls() == 4
    assert sb.count("Contact") == 1


async def test_expired_session_reauthenticates_once(
    sandbox: tuple[SalesforceSandbox, str], make_conn: ConnFactory
) -> None:
    sb, _ = sandbox
    conn = make_conn()
    await conn.check_auth()
    before = sb.token_requests
    sb.faults.apply({"expire_tokens": True})
    await conn.check_auth()
    assert sb.token_requests == before + 1
    await conn.check_auth()
    assert sb.token_requests == before + 1


async def test_revoked_auth_raises_auth_error_without_secrets(
    sandbox: tuple[SalesforceSandbox, str], make_conn: ConnFactory
) -> None:
    sb, _ = sandbox
    conn = make_conn(auth_flow="refresh_token", refresh_token="rt-123")
    await conn.check_auth()
    sb.faults.apply({"revoke_auth": True})
    with pytest.raises(AuthError) as info:
        await conn.check_auth()
    assert "invalid_grant" in str(info.value)
    assert SECRET not in str(info.value) and "rt-123" not in str(info.value)
    with pytest.raises(AuthError) as bad:
        await make_conn(client_secret="wrong-secret").check_auth()
    assert "wrong-secret" not in str(bad.value)


async def test_quota_reserve_stops_writes_before_the_org_runs_dry(
    sandbox: tuple[SalesforceSandbox, str], make_conn: ConnFactory
) -> None:
    sb, _ = sandbox
    sb.daily_limit, sb.api_used = 100, 80
    conn = make_conn(quota_reserve=0.1)
    await conn.check_auth()
    written = 0
    with pytest.raises(QuotaExhausted):
        for i in range(50):
            await conn.write(ObjectType.CONTACT, WriteOp.UPSERT, [contact(i)])
            written += 1
    assert written == 9  # 81..89 used, stop with 10 of 100 left
    assert sb.api_used == 90 and sb.api_used < sb.daily_limit
    quota = conn.quota()
    assert quota is not None and quota.limit == 100 and quota.remaining == 10


async def test_exhausted_org_quota_raises_quota_exhausted(
    sandbox: tuple[SalesforceSandbox, str], make_conn: ConnFactory
) -> None:
    sb, _ = sandbox
    conn = make_conn()
    await conn.start()
    sb.faults.apply({"exhaust_quota": True})
    with pytest.raises(QuotaExhausted):
        await conn.check_auth()


async def test_upsert_replayed_twice_creates_no_duplicate(
    sandbox: tuple[SalesforceSandbox, str], make_conn: ConnFactory
) -> None:
    sb, _ = sandbox
    conn = make_conn()
    items = [contact(i) for i in range(5)]
    first = await conn.write(ObjectType.CONTACT, WriteOp.UPSERT, items)
    second = await conn.write(ObjectType.CONTACT, WriteOp.UPSERT, items)
    third = await conn.write(ObjectType.CONTACT, WriteOp.UPSERT, items)
    assert all(r.created for r in first)
    assert not any(r.created for r in second + third)
    assert [r.id for r in first] == [r.id for r in second] == [r.id for r in third]
    assert sb.count("Contact") == 5


def _rsa_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


async def test_jwt_bearer_flow(
    sandbox: tuple[SalesforceSandbox, str], make_conn: ConnFactory
) -> None:
    sb, _ = sandbox
    private, public = _rsa_pair()
    sb.jwt_public_key = public
    conn = make_conn(
        auth_flow="jwt_bearer",
        client_secret=None,
        username=sb.username,
        private_key=SecretStr(private),
    )
    await conn.check_auth()
    assert sb.token_requests == 1
    other_private, _ = _rsa_pair()
    bad = make_conn(
        auth_flow="jwt_bearer", username=sb.username, private_key=SecretStr(other_private)
    )
    with pytest.raises(AuthError) as info:
        await bad.check_auth()
    assert "BEGIN" not in str(info.value)
    wrong_user = make_conn(
        auth_flow="jwt_bearer", username="someone@else.com", private_key=SecretStr(private)
    )
    with pytest.raises(AuthError):
        await wrong_user.check_auth()


HOSTILE = [
    "x' OR Name != '",
    "O'Brien",
    "back\\slash",
    "trailing\\",
    "new\nline",
    "ünïcødé 🚀",
    "100%",
    "a_b",
    "plain",
]


async def test_criteria_with_hostile_values_match_exactly(
    sandbox: tuple[SalesforceSandbox, str], make_conn: ConnFactory
) -> None:
    sb, _ = sandbox
    for name in [*HOSTILE, "axb", "1000", "other"]:
        sb.insert("Contact", {"LastName": name})
    conn = make_conn()

    async def names(rule: Condition | Group) -> set[str]:
        pages = conn.changed_since(ObjectType.CONTACT, None, fields=["LastName"], criteria=rule)
        return {str(r.fields["LastName"]) async for p in pages for r in p.records}

    for value in HOSTILE:
        assert await names(Condition("LastName", Op.EQ, value)) == {value}
    assert await names(Condition("LastName", Op.CONTAINS, "%")) == {"100%"}
    assert await names(Condition("LastName", Op.CONTAINS, "_")) == {"a_b"}
    assert await names(Condition("LastName", Op.ENDS_WITH, "\\")) == {"trailing\\"}
    assert await names(Condition("LastName", Op.STARTS_WITH, "ünï")) == {"ünïcødé 🚀"}
    assert await names(Condition("LastName", Op.IN, ("O'Brien", "x' OR Name != '"))) == {
        "O'Brien",
        "x' OR Name != '",
    }
    rule = Group(
        "any", (Condition("LastName", Op.EQ, "plain"), Condition("LastName", Op.EQ, "a_b"))
    )
    assert await names(rule) == {"plain", "a_b"}
    with pytest.raises(ConfigError):
        await names(Condition("LastName) OR (Id", Op.EQ, "x"))
    with pytest.raises(ConfigError):
        await names(Condition("NoSuchField__c", Op.EQ, "x"))


async def test_lead_pull_includes_conversions_and_conversion_fields(
    sandbox: tuple[SalesforceSandbox, str], make_conn: ConnFactory
) -> None:
    sb, _ = sandbox
    seed_salesforce(sb, contacts=5, leads=10, converted_fraction=0.0, accounts=1, opportunities=1)
    conn = make_conn()
    pages = [p async for p in conn.changed_since(ObjectType.LEAD, None)]
    cursor = pages[-1].cursor
    assert cursor is not None
    lead_id = next(iter(sb.records["Lead"]))
    # Converted with a stamp before the cursor: only the ConvertedDate query can see it.
    sb.convert_lead(lead_id, at=parse_sf_datetime(cursor) - timedelta(seconds=5))
    again = [r async for p in conn.changed_since(ObjectType.LEAD, cursor) for r in p.records]
    # Besides it, only the leads stamped in the cursor's own second are read again.
    at_cursor = [
        i for i, r in sb.records["Lead"].items() if r["SystemModstamp"] == parse_sf_datetime(cursor)
    ]
    assert sorted(r.id for r in again) == sorted([lead_id, *at_cursor])
    converted = next(r for r in again if r.id == lead_id)
    assert converted.fields["IsConverted"] is True
    assert converted.fields["ConvertedContactId"] in sb.records["Contact"]


async def test_get_by_ids_deleted_since_and_describe(
    sandbox: tuple[SalesforceSandbox, str], make_conn: ConnFactory
) -> None:
    sb, _ = sandbox
    ids = bulk_insert_contacts(sb, 250)
    conn = make_conn()
    got = await conn.get_by_ids(ObjectType.CONTACT, [*ids[:210], "003000000000000AAA"])
    assert {r.id for r in got} == set(ids[:210])
    since = (now_utc() - timedelta(minutes=10)).isoformat()
    two_minutes_ago = now_utc() - timedelta(minutes=2)
    sb.delete("Contact", ids[0], at=two_minutes_ago)
    sb.delete("Contact", ids[1], at=two_minutes_ago)
    sb.delete("Contact", ids[2])  # just now: queryAll sees it at once
    sb.delete("Contact", ids[3], at=now_utc() - timedelta(days=16))  # out of the recycle bin
    deleted, cursor = await conn.deleted_since(ObjectType.CONTACT, since)
    assert {d.id for d in deleted} == {ids[0], ids[1], ids[2]}
    assert all(d.deleted_at is not None for d in deleted)
    # The next cursor stays a little behind, so a deletion committed meanwhile is seen.
    assert cursor is not None and parse_sf_datetime(cursor) <= now_utc()
    deleted_all, _ = await conn.deleted_since(ObjectType.CONTACT, None)
    assert {d.id for d in deleted_all} == {ids[0], ids[1], ids[2]}
    fields = {f.name: f for f in await conn.describe(ObjectType.LEAD)}
    assert {n for n, f in fields.items() if f.required} == {"LastName", "Company"}
    assert fields["Email"].type == "email"


async def test_malformed_query_is_a_config_error(make_conn: ConnFactory) -> None:
    conn = make_conn()
    with pytest.raises(ConfigError) as info:
        await conn._get("/query", endpoint="query", params={"q": "SELECT FROM"})
    assert "MALFORMED_QUERY" in str(info.value)


async def test_token_endpoint_is_called_with_form_fields(
    sandbox: tuple[SalesforceSandbox, str],
) -> None:
    _, base = sandbox
    async with aiohttp.ClientSession() as s:
        r = await s.post(
            f"{base}/services/oauth2/token",
            data={"grant_type": "refresh_token", "client_id": "cid", "client_secret": SECRET,
                  "refresh_token": "rt-123"},
        )  # fmt: skip
        assert r.status == 200


async def test_a_record_saved_later_in_the_cursors_second_is_not_skipped(
    sandbox: tuple[SalesforceSandbox, str], make_conn: ConnFactory
) -> None:
    """SystemModstamp has whole seconds: a pull that ended at second S must find a record
    saved (or deleted) later in S, whose stamp is S too."""
    sb, _ = sandbox
    conn = make_conn()
    second = now_utc() - timedelta(minutes=1)
    first = sb.insert("Contact", {"LastName": "First"}, at=second)
    pages = [p async for p in conn.changed_since(ObjectType.CONTACT, None)]
    cursor = pages[-1].cursor
    assert cursor is not None and parse_sf_datetime(cursor) == second
    later = sb.insert("Contact", {"LastName": "Later"}, at=second + timedelta(milliseconds=700))
    assert later["SystemModstamp"] == second  # kept to the second
    again = {r.id async for p in conn.changed_since(ObjectType.CONTACT, cursor) for r in p.records}
    assert again == {first["Id"], later["Id"]}

    sb.delete("Contact", first["Id"], at=second)
    gone, deleted_cursor = await conn.deleted_since(ObjectType.CONTACT, second.isoformat())
    assert [d.id for d in gone] == [first["Id"]]
    sb.delete("Contact", later["Id"], at=second + timedelta(milliseconds=900))
    gone, _ = await conn.deleted_since(ObjectType.CONTACT, second.isoformat())
    assert {d.id for d in gone} == {first["Id"], later["Id"]}
    assert deleted_cursor is not None


async def test_duplicate_rule_errors_name_the_matched_record(
    sandbox: tuple[SalesforceSandbox, str], make_conn: ConnFactory
) -> None:
    sb, _ = sandbox
    assert sb.duplicate_rules == "alert"  # on by default, as the standard rules are
    old = sb.insert("Contact", {"LastName": "Old", "Email": "dup@example.com"})
    other = sb.insert("Contact", {"LastName": "Other", "Email": "other@example.com"})
    conn = make_conn()
    [created, edited, fine] = [
        *await conn.write(
            ObjectType.CONTACT, WriteOp.UPSERT, [contact(1, Email="DUP@example.com")]
        ),
        *await conn.write(
            ObjectType.CONTACT,
            WriteOp.UPDATE,
            [WriteItem({"Email": "dup@example.com"}, id=other["Id"])],
        ),
        *await conn.write(ObjectType.CONTACT, WriteOp.UPSERT, [contact(2)]),
    ]
    for res in (created, edited):
        assert not res.ok and res.error_code == "DUPLICATES_DETECTED"
        assert res.error_category is ErrorCategory.DUPLICATE
        assert res.error_message is not None
        assert f"existing Contact {old['Id']} (same email dup@example.com)" in res.error_message
        assert "crm.duplicate_rules_allow_save = true" in res.error_message
    assert fine.ok
    # With the setting, the header saves past a rule that alerts …
    allowed = make_conn(duplicate_rules_allow_save=True)
    [saved] = await allowed.write(
        ObjectType.CONTACT, WriteOp.UPSERT, [contact(3, Email="dup@example.com")]
    )
    assert saved.ok and saved.created
    # … not past one that blocks.
    sb.duplicate_rules = "block"
    [blocked] = await allowed.write(
        ObjectType.CONTACT, WriteOp.CREATE, [contact(4, Email="dup@example.com")]
    )
    assert not blocked.ok and blocked.error_message is not None
    assert "the rule blocks duplicates" in blocked.error_message
    assert old["Id"] in blocked.error_message

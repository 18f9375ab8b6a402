"""The HubSpot simulator driven by hubspot-api-client, HubSpot's own Python SDK.

A client nobody in this project wrote: it maps each status code the vendor's OpenAPI spec
documents to a model and validates the bodies against it, so a simulator answering 200
where HubSpot answers 201 (batch create), or leaving out a required field, fails here. It
covers every operation syncd uses (batch read/create/update/upsert/archive, search with
filters, sorts and paging, v4 associations, property definitions, lists and memberships,
errors) and the common ones an operator would try against `syncd sandbox` (single-record
contact/company/deal CRUD, listing with paging, read by email). The search lag is on, as
by default: a write is found by search only after it (see syncd/sandbox/hubspot/index.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hubspot import HubSpot
from hubspot.crm.associations.v4 import (
    AssociationSpec,
    BatchInputPublicFetchAssociationsBatchRequest,
    PublicFetchAssociationsBatchRequest,
)
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInput,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectId,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.lists import ListCreateRequest
from hubspot.crm.properties import Option, PropertyCreate, PropertyUpdate

from syncd.sandbox.hubspot.app import HubSpotSandbox, bulk_load
from syncd.sandbox.runner import HS_TOKEN, SandboxThread

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")
TAG = "syncd_sync_tags"


@dataclass
class Portal:
    """The simulator in a thread and an SDK client pointed at it."""

    sandbox: SandboxThread
    url: str
    api: HubSpot

    @property
    def sb(self) -> HubSpotSandbox:
        state = self.sandbox.set.state("hubspot")
        assert isinstance(state, HubSpotSandbox)
        return state

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Touch the simulator's state on its own loop."""
        return self.sandbox.run(fn, *args)


@pytest.fixture
def portal() -> Iterator[Portal]:
    sandbox = SandboxThread(("hubspot",))
    url = sandbox.set.url("hubspot")
    try:
        # `host` for the generated APIs, `base_url` for the generic api_request.
        yield Portal(sandbox, url, HubSpot(access_token=HS_TOKEN, host=url, base_url=url))
    finally:
        sandbox.close()


def contact_input(email: str, **props: str) -> SimplePublicObjectInputForCreate:
    return SimplePublicObjectInputForCreate(properties={"email": email, **props})


def batch_input(email: str) -> SimplePublicObjectBatchInputForCreate:
    return SimplePublicObjectBatchInputForCreate(properties={"email": email})


def search_emails(api: HubSpot, *filters: Filter, **kw: Any) -> list[str]:
    body = PublicObjectSearchRequest(
        filter_groups=[FilterGroup(filters=list(filters))] if filters else [],
        properties=["email"],
        limit=100,
        **kw,
    )
    page = api.crm.contacts.search_api.do_search(public_object_search_request=body)
    return [r.properties["email"] for r in page.results]


def eventually(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait for `cond`, asking twice a second (search allows about 5 calls/s)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


# ---- single records ---------------------------------------------------------------------
def test_contact_create_read_update_archive(portal: Portal) -> None:
    basic = portal.api.crm.contacts.basic_api
    made = basic.create(contact_input("ada@example.com", firstname="Ada"))
    assert made.id and made.properties["email"] == "ada@example.com"
    assert made.created_at is not None and made.updated_at is not None
    got = basic.get_by_id(made.id, properties=["firstname", "email"])
    assert got.properties["firstname"] == "Ada"
    by_email = basic.get_by_id("ADA@example.com", id_property="email")
    assert by_email.id == made.id
    changed = basic.update(made.id, SimplePublicObjectInput(properties={"lastname": "L"}))
    assert changed.properties["lastname"] == "L"
    assert changed.updated_at >= made.updated_at
    basic.archive(made.id)
    with pytest.raises(ApiException) as gone:
        basic.get_by_id(made.id)
    assert gone.value.status == 404
    archived = basic.get_page(archived=True)
    assert [r.id for r in archived.results] == [made.id]
    assert archived.results[0].archived and archived.results[0].archived_at is not None


def test_company_and_deal_crud(portal: Portal) -> None:
    companies = portal.api.crm.companies.basic_api
    deals = portal.api.crm.deals.basic_api
    from hubspot.crm.companies import SimplePublicObjectInputForCreate as CompanyCreate
    from hubspot.crm.deals import SimplePublicObjectInput as DealUpdate
    from hubspot.crm.deals import SimplePublicObjectInputForCreate as DealCreate

    acme = companies.create(CompanyCreate(properties={"name": "Acme", "domain": "ACME.io"}))
    assert companies.get_by_id(acme.id).properties["domain"] == "acme.io"
    deal = deals.create(
        DealCreate(properties={"dealname": "Big", "amount": "1000", "pipeline": "default"})
    )
    assert deals.update(deal.id, DealUpdate(properties={"amount": "1200"})).properties[
        "amount"
    ] == ("1200")
    deals.archive(deal.id)
    companies.archive(acme.id)
    assert companies.get_page().results == []
    assert deals.get_page().results == []


def test_listing_pages_by_id(portal: Portal) -> None:
    portal.run(bulk_load, portal.sb, "contacts", [{"email": f"p{i}@example.com"} for i in range(7)])
    basic = portal.api.crm.contacts.basic_api
    seen: list[str] = []
    after = None
    while True:
        page = basic.get_page(limit=3, after=after)
        seen.extend(r.properties["email"] for r in page.results)
        if page.paging is None:
            break
        after = page.paging.next.after
    assert seen == [f"p{i}@example.com" for i in range(7)]


# ---- batches (what syncd writes with) ---------------------------------------------------
def test_batch_create_answers_201_and_the_sdk_returns_the_records(portal: Portal) -> None:
    batch = portal.api.crm.contacts.batch_api
    out = batch.create(
        BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[batch_input(f"b{i}@example.com") for i in range(3)]
        )
    )
    assert out is not None, "a 200 makes the SDK return None: HubSpot answers 201"
    assert out.status == "COMPLETE"
    assert sorted(r.properties["email"] for r in out.results) == [
        "b0@example.com",
        "b1@example.com",
        "b2@example.com",
    ]
    _, status, _ = batch.create_with_http_info(
        BatchInputSimplePublicObjectBatchInputForCreate(inputs=[batch_input("b9@example.com")])
    )
    assert status == 201


def test_batch_read_update_upsert_archive(portal: Portal) -> None:
    ids = portal.run(
        bulk_load, portal.sb, "contacts", [{"email": f"u{i}@example.com"} for i in range(2)]
    )
    batch = portal.api.crm.contacts.batch_api
    read = batch.read(
        BatchReadInputSimplePublicObjectId(
            properties=["email"],
            inputs=[SimplePublicObjectId(id="u1@example.com")],
            id_property="email",
            properties_with_history=[],
        )
    )
    assert [r.id for r in read.results] == [ids[1]]
    updated = batch.update(
        BatchInputSimplePublicObjectBatchInput(
            inputs=[SimplePublicObjectBatchInput(id=ids[0], properties={"firstname": "Up"})]
        )
    )
    assert updated.results[0].properties["firstname"] == "Up"
    upserted = batch.upsert(
        BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[
                SimplePublicObjectBatchInputUpsert(
                    id="u1@example.com", id_property="email", properties={"lastname": "Old"}
                ),
                SimplePublicObjectBatchInputUpsert(
                    id="new@example.com", id_property="email", properties={"lastname": "New"}
                ),
            ]
        )
    )
    assert sorted((r.properties["email"], r.new) for r in upserted.results) == [
        ("new@example.com", True),
        ("u1@example.com", False),
    ]
    batch.archive(BatchInputSimplePublicObjectId(inputs=[SimplePublicObjectId(id=ids[0])]))
    # Read by id sees the archive at once; a missing id is a 207 with the error listed.
    partial = batch.read(
        BatchReadInputSimplePublicObjectId(
            properties=["email"],
            inputs=[SimplePublicObjectId(id=ids[0]), SimplePublicObjectId(id=ids[1])],
            properties_with_history=[],
        )
    )
    assert [r.id for r in partial.results] == [ids[1]]
    assert partial.num_errors == 1 and partial.errors[0].category == "OBJECT_NOT_FOUND"


def test_batch_create_with_an_existing_email_is_a_409_conflict(portal: Portal) -> None:
    portal.run(bulk_load, portal.sb, "contacts", [{"email": "taken@example.com"}])
    with pytest.raises(ApiException) as info:
        portal.api.crm.contacts.batch_api.create(
            BatchInputSimplePublicObjectBatchInputForCreate(
                inputs=[batch_input("taken@example.com")]
            )
        )
    assert info.value.status == 409
    body = _error_body(info.value)
    assert body["category"] == "CONFLICT"
    assert body["message"].startswith("Contact already exists. Existing ID: ")


# ---- search -----------------------------------------------------------------------------
def test_search_filters_sorts_and_pages(portal: Portal) -> None:
    portal.run(
        bulk_load,
        portal.sb,
        "contacts",
        [
            {"email": f"s{i:02}@example.com", "lastname": "Even" if i % 2 else "Odd"}
            for i in range(25)
        ],
    )
    search = portal.api.crm.contacts.search_api
    emails: list[str] = []
    after = None
    while True:
        page = search.do_search(
            public_object_search_request=PublicObjectSearchRequest(
                filter_groups=[
                    FilterGroup(
                        filters=[Filter(property_name="lastname", operator="EQ", value="even")]
                    )
                ],
                sorts=[{"propertyName": "email", "direction": "DESCENDING"}],
                properties=["email", "lastname"],
                limit=5,
                after=after,
            )
        )
        assert page.total == 12
        emails.extend(r.properties["email"] for r in page.results)
        if page.paging is None:
            break
        after = page.paging.next.after
        time.sleep(0.25)  # HubSpot's search allows about 5 calls a second
    assert emails == sorted((f"s{i:02}@example.com" for i in range(1, 25, 2)), reverse=True)
    some = search_emails(
        portal.api,
        Filter(property_name="email", operator="IN", values=["s03@example.com", "s04@example.com"]),
    )
    assert sorted(some) == ["s03@example.com", "s04@example.com"]


def test_search_finds_a_write_only_after_the_index_lag(portal: Portal) -> None:
    """Reads by id see a write at once; search some seconds later (on the test clock)."""
    basic = portal.api.crm.contacts.basic_api
    made = basic.create(contact_input("late@example.com", lastname="First"))
    by_email = Filter(property_name="email", operator="EQ", value="late@example.com")
    assert search_emails(portal.api, by_email) == []
    assert basic.get_by_id(made.id).properties["email"] == "late@example.com"
    eventually(lambda: search_emails(portal.api, by_email) == ["late@example.com"])
    basic.update(made.id, SimplePublicObjectInput(properties={"lastname": "Second"}))
    second = Filter(property_name="lastname", operator="EQ", value="Second")
    assert search_emails(portal.api, second) == []  # the index still has "First"
    eventually(lambda: search_emails(portal.api, second) == ["late@example.com"])


def test_invalid_search_is_a_400_validation_error(portal: Portal) -> None:
    with pytest.raises(ApiException) as info:
        search_emails(portal.api, Filter(property_name="email", operator="LIKE", value="x"))
    assert info.value.status == 400
    assert _error_body(info.value)["category"] == "VALIDATION_ERROR"


# ---- associations, properties, lists ------------------------------------------------------
def test_v4_associations(portal: Portal) -> None:
    (cid,) = portal.run(bulk_load, portal.sb, "contacts", [{"email": "a@example.com"}])
    acme, globex = portal.run(
        bulk_load, portal.sb, "companies", [{"name": "Acme"}, {"name": "Globex"}]
    )
    v4 = portal.api.crm.associations.v4
    labelled, status, _ = v4.basic_api.create_with_http_info(
        "contacts",
        cid,
        "companies",
        acme,
        [AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=1)],
    )
    assert status == 201
    assert (labelled.from_object_id, labelled.to_object_id) == (cid, acme)
    assert labelled.labels == ["Primary"]
    default = v4.basic_api.create_default("contacts", cid, "companies", globex)
    assert default.status == "COMPLETE"
    page = v4.basic_api.get_page("contacts", cid, "companies")
    types = {r.to_object_id: {t.type_id for t in r.association_types} for r in page.results}
    assert types == {acme: {1, 279}, globex: {279}}
    batch = v4.batch_api.get_page(
        "contacts",
        "companies",
        BatchInputPublicFetchAssociationsBatchRequest(
            inputs=[PublicFetchAssociationsBatchRequest(id=cid)]
        ),
    )
    assert {t.to_object_id for t in batch.results[0].to} == {acme, globex}
    v4.basic_api.archive("contacts", cid, "companies", globex)
    left = v4.basic_api.get_page("contacts", cid, "companies").results
    assert [r.to_object_id for r in left] == [acme]


def test_property_definitions(portal: Portal) -> None:
    core = portal.api.crm.properties.core_api
    names = {p.name for p in core.get_all("contacts").results}
    assert {"email", "firstname", TAG} <= names
    made = core.create(
        "contacts",
        PropertyCreate(
            name="favorite_color",
            label="Favorite color",
            type="enumeration",
            field_type="select",
            group_name="contactinformation",
            options=[Option(label="Red", value="red", display_order=0, hidden=False)],
        ),
    )
    assert made.name == "favorite_color"
    updated = core.update(
        "contacts",
        "favorite_color",
        PropertyUpdate(
            options=[
                Option(label="Red", value="red", display_order=0, hidden=False),
                Option(label="Blue", value="blue", display_order=1, hidden=False),
            ]
        ),
    )
    assert [o.value for o in updated.options] == ["red", "blue"]
    assert core.get_by_name("contacts", "favorite_color").label == "Favorite color"
    with pytest.raises(Exception) as dup:
        core.create(
            "contacts",
            PropertyCreate(
                name="favorite_color",
                label="Again",
                type="string",
                field_type="text",
                group_name="contactinformation",
            ),
        )
    assert getattr(dup.value, "status", None) == 409


def test_manual_list_and_memberships(portal: Portal) -> None:
    ids = portal.run(
        bulk_load, portal.sb, "contacts", [{"email": f"m{i}@example.com"} for i in range(3)]
    )
    lists = portal.api.crm.lists
    made = lists.lists_api.create(
        ListCreateRequest(name="Newsletter", object_type_id="0-1", processing_type="MANUAL")
    )
    list_id = made.list.list_id
    added = lists.memberships_api.add(list_id, [*ids, "999"])
    assert sorted(added.records_ids_added) == sorted(ids)
    assert added.record_ids_missing == ["999"]
    members = lists.memberships_api.get_page(list_id)
    assert sorted(m.record_id for m in members.results) == sorted(ids)
    removed = lists.memberships_api.remove(list_id, [ids[0]])
    assert removed.record_ids_removed == [ids[0]]
    assert lists.lists_api.get_by_id(list_id).list.size == 2


# ---- errors ---------------------------------------------------------------------------
def _error_body(exc: Any) -> dict[str, Any]:
    import json

    body = json.loads(exc.body)
    assert isinstance(body, dict)
    assert UUID4.match(str(body.get("correlationId"))), body
    return body


def test_wrong_token_is_a_401_with_hubspots_error_shape(portal: Portal) -> None:
    wrong = HubSpot(access_token="pat-na1-wrong", host=portal.url)
    with pytest.raises(ApiException) as info:
        wrong.crm.contacts.basic_api.get_page()
    assert info.value.status == 401
    body = _error_body(info.value)
    assert body == {
        "status": "error",
        "message": "Authentication credentials not found.",
        "correlationId": body["correlationId"],
        "category": "INVALID_AUTHENTICATION",
    }


def test_validation_and_not_found_errors(portal: Portal) -> None:
    basic = portal.api.crm.contacts.basic_api
    with pytest.raises(ApiException) as bad:
        basic.create(contact_input("not-an-email"))
    assert bad.value.status == 400
    body = _error_body(bad.value)
    assert body["category"] == "VALIDATION_ERROR"
    assert body["errors"][0]["code"] == "INVALID_EMAIL"
    with pytest.raises(ApiException) as unknown:
        basic.create(SimplePublicObjectInputForCreate(properties={"nope": "x"}))
    assert _error_body(unknown.value)["errors"][0]["code"] == "PROPERTY_DOESNT_EXIST"
    with pytest.raises(ApiException) as missing:
        basic.get_by_id("424242")
    assert missing.value.status == 404
    assert _error_body(missing.value)["category"] == "OBJECT_NOT_FOUND"


def test_account_details_through_the_generic_request(portal: Portal) -> None:
    """The token check syncd makes (``GET /account-info/v3/details``)."""
    resp = portal.api.api_request({"method": "GET", "path": "/account-info/v3/details"})
    assert resp.status_code == 200
    assert resp.json()["portalId"] == portal.sb.portal_id

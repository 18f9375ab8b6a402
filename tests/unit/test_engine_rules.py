"""Pure engine rules: tags decide what syncs, mapping and validation, matching (the merge
has its own tests in tests/unit/test_merge.py)."""

from __future__ import annotations

import pytest

from syncd.config import ObjectSyncSettings
from syncd.emails import is_valid_email, normalize_domain, normalize_email
from syncd.errors import RecordError
from syncd.model import ErrorCategory, ObjectType, parse_tags
from syncd.sync.eligibility import (
    Excluded,
    Target,
    inbound_target,
    tags_after_conversion,
)
from syncd.sync.mapping import ObjectMapping
from syncd.vendors.activecampaign.webhook import parse_activecampaign
from syncd.vendors.hubspot.webhook import parse_hubspot


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"added-to-salesforce-contact"}, ObjectType.CONTACT),
        ({"created-from-salesforce-contact"}, ObjectType.CONTACT),
        ({"salesforce-lead-converted-to-contact"}, ObjectType.CONTACT),
        ({"added-to-salesforce-lead"}, ObjectType.LEAD),
        ({"created-from-salesforce-lead"}, ObjectType.LEAD),
        # A converted lead keeps syncing as the contact.
        (
            {"created-from-salesforce-lead", "salesforce-lead-converted-to-contact"},
            ObjectType.CONTACT,
        ),
    ],
)
def test_sync_tags_pick_the_target(tags: set[str], expected: ObjectType) -> None:
    assert inbound_target(tags) == Target(expected)


def test_untagged_is_excluded_with_reason() -> None:
    result = inbound_target({"newsletter", "vip"})
    assert isinstance(result, Excluded)
    assert result.reason.startswith("untagged")


def test_parse_tags() -> None:
    assert parse_tags(" a, b ;c,, ") == frozenset({"a", "b", "c"})
    assert parse_tags(["x", " y "]) == frozenset({"x", "y"})
    assert parse_tags(None) == frozenset()


def test_conversion_swaps_tags() -> None:
    add, remove = tags_after_conversion(
        {"created-from-salesforce-lead", "created-from-salesforce-contact", "vip"}
    )
    assert add == {"salesforce-lead-converted-to-contact"}
    assert remove == {"created-from-salesforce-lead", "created-from-salesforce-contact"}


def contact_mapping() -> ObjectMapping:
    s = ObjectSyncSettings(
        mapping={"email": "Email", "firstName": "FirstName", "lastName": "LastName"},
        transforms={"email": "lower"},
        required=["lastName"],
    )
    return ObjectMapping.from_settings(ObjectType.CONTACT, s)


def test_mapping_writes_only_mapped_fields_with_transforms() -> None:
    m = contact_mapping()
    out = m.to_crm({"email": "A@B.COM", "lastName": "Lee", "phone": "123", "tags": ["x"]})
    assert out == {"Email": "a@b.com", "LastName": "Lee"}
    assert m.to_hub({"Email": "X@Y.COM", "FirstName": "Ann", "Other": 1}) == {
        "email": "x@y.com",
        "firstName": "Ann",
    }


def test_validation_before_any_call() -> None:
    m = contact_mapping()
    with pytest.raises(RecordError) as info:
        m.validate_hub({"email": "a@b.com", "lastName": " "}, creating=True)
    assert info.value.category is ErrorCategory.VALIDATION
    assert "lastName" in info.value.message
    m.validate_hub({"email": "a@b.com"}, creating=False)  # updates need no required fields
    with pytest.raises(RecordError) as info:
        m.validate_hub({"email": "not-an-email", "lastName": "x"}, creating=True)
    assert info.value.code == "INVALID_EMAIL"


def test_opportunity_fixed_mapping() -> None:
    m = ObjectMapping.from_settings(ObjectType.OPPORTUNITY, ObjectSyncSettings())
    hub = m.to_hub(
        {"Name": "Deal", "Amount": 5.0, "StageName": "Won", "CloseDate": "2026-01-01", "X": 1}
    )
    assert hub == {"name": "Deal", "amount": 5.0, "stage": "Won", "close_date": "2026-01-01"}


def test_matching_helpers() -> None:
    assert normalize_email("  Ann@Example.COM ") == "ann@example.com"
    assert is_valid_email("a.b+c@example.co.uk")
    for bad in ("", "a@", "@b.com", "a b@c.com", "a@b", "a@@b.com", "x" * 250 + "@b.com"):
        assert not is_valid_email(bad), bad
    assert normalize_domain("https://www.Example.com/about") == "example.com"


def test_parse_activecampaign_webhook() -> None:
    change = parse_activecampaign(
        {
            "type": "update",
            "contact[id]": "42",
            "contact[email]": " Ann@Example.com",
            "contact[first_name]": "Ann",
            "contact[last_name]": "Lee",
            "contact[tags]": "added-to-salesforce-lead, vip",
            "contact[fields][7]": "blue",
        }
    )
    assert change.record_key == "42" and change.object is ObjectType.LEAD
    assert change.email == "ann@example.com" and change.name == "Ann Lee"
    assert change.fields["field:7"] == "blue"
    assert change.fields["tags"] == ["added-to-salesforce-lead", "vip"]
    with pytest.raises(ValueError, match="contact\\[id\\]"):
        parse_activecampaign({"type": "update", "contact[id]": "x"})
    with pytest.raises(ValueError, match="type"):
        parse_activecampaign({"type": "deal_add", "contact[id]": "1"})


def test_parse_hubspot_events() -> None:
    changes = parse_hubspot(
        [
            {
                "subscriptionType": "contact.propertyChange",
                "objectId": 5,
                "propertyName": "email",
                "propertyValue": "X@y.io",
            }
        ]
    )
    assert changes[0].record_key == "5" and changes[0].email == "x@y.io"
    for bad in (
        {},
        [],
        [{"subscriptionType": "deal.creation", "objectId": 1}],
        [{"subscriptionType": "contact.creation"}],
    ):
        with pytest.raises(ValueError):
            parse_hubspot(bad)


@pytest.mark.parametrize("bad", ["²", "١٢", "1" * 19, "", " ", "12a", "-5", "1.0"])
def test_record_ids_are_ascii_digits_of_sane_length(bad: str) -> None:
    with pytest.raises(ValueError, match="contact\\[id\\]"):
        parse_activecampaign({"type": "update", "contact[id]": bad})
    event = {"subscriptionType": "contact.propertyChange", "objectId": bad}
    with pytest.raises(ValueError, match="objectId"):
        parse_hubspot([event])


def test_the_longest_numeric_id_is_accepted() -> None:
    assert parse_activecampaign({"type": "update", "contact[id]": "9" * 18}).record_key == "9" * 18

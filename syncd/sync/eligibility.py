"""Which hub records go to the CRM, as what, decided by their sync tags."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from syncd.model import ObjectType, SyncTag

CONTACT_TAGS = frozenset(
    {SyncTag.ADDED_TO_SF_CONTACT, SyncTag.CREATED_FROM_SF_CONTACT, SyncTag.SF_LEAD_CONVERTED}
)
LEAD_TAGS = frozenset({SyncTag.ADDED_TO_SF_LEAD, SyncTag.CREATED_FROM_SF_LEAD})
ALL_SYNC_TAGS = frozenset(t.value for t in SyncTag)


@dataclass(frozen=True)
class Target:
    """Where an eligible hub record goes: the CRM object."""

    object: ObjectType


@dataclass(frozen=True)
class Excluded:
    """Why a hub record does not sync."""

    reason: str


def parse_tags(raw: object) -> frozenset[str]:
    """Tags from a list or a comma/semicolon separated string, trimmed, empties dropped."""
    if raw is None:
        return frozenset()
    items: Iterable[object]
    if isinstance(raw, str):
        items = raw.replace(";", ",").split(",")
    elif isinstance(raw, Iterable):
        items = raw
    else:
        return frozenset()
    return frozenset(s for s in (str(i).strip() for i in items) if s)


def inbound_target(tags: Iterable[str]) -> Target | Excluded:
    """Contact tags win over lead tags (a converted lead is a contact); no sync tag excludes."""
    present = frozenset(tags)
    if present & CONTACT_TAGS:
        return Target(ObjectType.CONTACT)
    if present & LEAD_TAGS:
        return Target(ObjectType.LEAD)
    return Excluded(
        "untagged: the contact carries no Salesforce sync tag "
        f"(add {SyncTag.ADDED_TO_SF_CONTACT.value} or {SyncTag.ADDED_TO_SF_LEAD.value})"
    )


def tags_after_conversion(tags: Iterable[str]) -> tuple[set[str], set[str]]:
    """Tags to add and remove when the CRM converted the record's lead into a contact."""
    present = set(tags)
    remove = present & {
        SyncTag.CREATED_FROM_SF_CONTACT.value,
        SyncTag.CREATED_FROM_SF_LEAD.value,
        SyncTag.ADDED_TO_SF_LEAD.value,
    }
    add = {SyncTag.SF_LEAD_CONVERTED.value} - present
    return add, remove

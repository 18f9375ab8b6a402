"""Which hub records go to the CRM, as what, decided by their sync tags."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from syncd.model import CONTACT_TAGS, LEAD_TAGS, ObjectType, SyncTag


@dataclass(frozen=True)
class Target:
    """Where an eligible hub record goes: the CRM object."""

    object: ObjectType


@dataclass(frozen=True)
class Excluded:
    """Why a hub record does not sync."""

    reason: str


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

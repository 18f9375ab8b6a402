"""HubSpot webhooks: the JSON array of events a signed request carries, as Changes.

The events name a contact or a company and at most one changed property, never the whole
record, so each becomes a hint: the flush re-reads the record from HubSpot before sending it.
"""

from __future__ import annotations

from typing import Any

from syncd.emails import normalize_email
from syncd.model import HINT_KEY, Change, Direction, ObjectType, is_numeric_id

# Contacts and companies (developers.hubspot.com, "Webhooks API": subscription types);
# a company event names a company, which syncs as a Salesforce account.
HUBSPOT_EVENTS = frozenset(
    {
        "contact.creation",
        "contact.propertyChange",
        "contact.deletion",
        "company.creation",
        "company.propertyChange",
        "company.deletion",
    }
)


def parse_hubspot(body: Any) -> list[Change]:
    """HubSpot webhook events as hint-only Changes (the flush re-reads each contact)."""
    if not isinstance(body, list) or not body:
        raise ValueError("body: must be a non-empty JSON array of events")
    changes: list[Change] = []
    for i, ev in enumerate(body):
        if not isinstance(ev, dict):
            raise ValueError(f"[{i}]: must be an object")
        kind = ev.get("subscriptionType")
        if kind not in HUBSPOT_EVENTS:
            raise ValueError(f"[{i}].subscriptionType: unsupported {kind!r}")
        oid = ev.get("objectId")
        if isinstance(oid, bool) or not isinstance(oid, int | str) or not is_numeric_id(str(oid)):
            raise ValueError(f"[{i}].objectId: required, a numeric id (1 to 18 digits 0-9)")
        fields: dict[str, Any] = {HINT_KEY: True}
        prop = ev.get("propertyName")
        if isinstance(prop, str) and prop:
            fields[prop] = ev.get("propertyValue")
        changes.append(
            Change(
                direction=Direction.INBOUND,
                object=ObjectType.ACCOUNT if kind.startswith("company.") else ObjectType.CONTACT,
                record_key=str(oid),
                source="webhook",
                fields=fields,
                email=normalize_email(fields.get("email")),
                event=str(kind),
            )
        )
    return changes

"""``check-config --online``: does the configuration fit the real systems it names?"""

from __future__ import annotations

from dataclasses import dataclass, field

from syncd.config import Settings
from syncd.errors import AuthError, IntegrationError, SyncdError
from syncd.model import ALL_SYNC_TAGS, FieldInfo, ObjectType
from syncd.sync.mapping import ObjectMapping
from syncd.vendors.protocols import CrmConnector, HubConnector

PEOPLE = (ObjectType.CONTACT, ObjectType.LEAD)
# Field types that accept each other's values when copied across.
_TEXTUAL = {"string", "text", "textarea", "email", "phone", "url", "picklist", "enumeration", "id"}
_SYSTEM = {"Id", "OwnerId", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp"}


@dataclass
class CheckReport:
    """Problems (each names the key and what to do) and informational lines."""

    problems: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)


def _compatible(a: str, b: str) -> bool:
    a, b = a.lower(), b.lower()
    return a == b or (a in _TEXTUAL and b in _TEXTUAL) or "string" in (a, b) or "text" in (a, b)


async def check_online(settings: Settings, crm: CrmConnector, hub: HubConnector) -> CheckReport:
    """Authenticate both sides and compare every mapped field with what the vendor has."""
    report = CheckReport()
    ok = {"crm": await _auth(crm, "crm", report), "hub": await _auth(hub, "hub", report)}
    for obj, s in settings.sync.objects.items():
        if not s.enabled or obj is ObjectType.OPPORTUNITY:
            continue
        mapping = ObjectMapping.from_settings(obj, s)
        key = f"sync.objects.{obj.value}.mapping"
        crm_fields = await _fields(crm, obj, "crm", report) if ok["crm"] else None
        hub_obj = ObjectType.CONTACT if obj in PEOPLE else obj
        hub_fields = await _fields(hub, hub_obj, "hub", report) if ok["hub"] else None
        for hub_name, crm_name in mapping.hub_to_crm.items():
            c = crm_fields.get(crm_name) if crm_fields is not None else None
            h = hub_fields.get(hub_name) if hub_fields is not None else None
            if crm_fields is not None and c is None:
                report.problems.append(
                    f"{key}.{hub_name}: Salesforce {obj.value} has no field {crm_name!r}; "
                    "fix the name or create the field"
                )
            if hub_fields is not None and h is None:
                report.problems.append(
                    f"{key}.{hub_name}: the hub has no {hub_obj.value} field {hub_name!r}; "
                    "fix the name or create the field"
                )
            if c is not None and h is not None and not _compatible(c.type, h.type):
                report.problems.append(
                    f"{key}.{hub_name}: types differ (hub {h.type}, Salesforce {c.type}); "
                    "map a field of a compatible type"
                )
        if crm_fields is not None and obj in PEOPLE and s.direction != "crm-to-hub":
            mapped = set(mapping.hub_to_crm.values())
            for f in crm_fields.values():
                if f.required and f.name not in mapped and f.name not in _SYSTEM:
                    report.problems.append(
                        f"{key}: Salesforce requires {f.name!r} to create a {obj.value}; "
                        f'map a hub field to it (e.g. {f.name.lower()} = "{f.name}")'
                    )
    if ok["hub"]:
        tags = ", ".join(sorted(ALL_SYNC_TAGS))
        report.info.append(f"hub: sync tags ({tags}) are created on first use where missing")
    for side, conn in (("crm", crm), ("hub", hub)):
        q = conn.quota()
        if q is not None:
            report.info.append(f"{side}: API quota {q.remaining} of {q.limit} calls left today")
    return report


async def _auth(conn: CrmConnector | HubConnector, side: str, report: CheckReport) -> bool:
    secret = "crm.client_secret / refresh_token / private_key" if side == "crm" else "hub.api_token"
    try:
        await conn.check_auth()
    except AuthError as exc:
        report.problems.append(f"{side}: authentication failed ({exc}); check {secret}")
        return False
    except (IntegrationError, SyncdError) as exc:
        report.problems.append(f"{side}: cannot reach the API ({exc}); check the URL and network")
        return False
    report.info.append(f"{side}: authentication ok")
    return True


async def _fields(
    conn: CrmConnector | HubConnector, obj: ObjectType, side: str, report: CheckReport
) -> dict[str, FieldInfo] | None:
    try:
        return {f.name: f for f in await conn.describe(obj)}
    except SyncdError as exc:
        report.problems.append(f"{side}: cannot describe {obj.value} fields ({exc})")
        return None

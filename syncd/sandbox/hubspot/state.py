"""The HubSpot simulator's data: objects, property definitions, lists, associations, bodies.

Objects are kept per type (``contacts``, ``companies``, ``deals``) with string ids, string
property values, and createdAt/updatedAt in epoch milliseconds. Property writes are checked
the way HubSpot checks them (unknown property, invalid email, invalid enumeration option).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from aiohttp import web

from syncd.sandbox.clock import scaled
from syncd.sandbox.common import SandboxBase
from syncd.sandbox.hubspot.index import SearchIndex
from syncd.sandbox.hubspot.objects import HsObject
from syncd.sandbox.hubspot.schema import (
    OPTOUT_PROPERTY,
    PropertyDef,
    default_properties,
    option,
)

__all__ = ["OPTOUT_PROPERTY", "PropertyDef"]

OBJECT_TYPE_IDS = {"contacts": "0-1", "companies": "0-2", "deals": "0-3"}
SINGULAR = {"contacts": "contact", "companies": "company", "deals": "deal"}
PLURAL = {**{v: k for k, v in SINGULAR.items()}, **{v: k for k, v in OBJECT_TYPE_IDS.items()}}
MODIFIED_PROPERTY = {
    "contacts": "lastmodifieddate",
    "companies": "hs_lastmodifieddate",
    "deals": "hs_lastmodifieddate",
}
CREATED_PROPERTY = {"contacts": "createdate", "companies": "createdate", "deals": "createdate"}
DEFAULT_PROPERTIES = {
    "contacts": (
        "createdate",
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
        "lastname",
    ),
    "companies": ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
    "deals": (
        "amount",
        "closedate",
        "createdate",
        "dealname",
        "dealstage",
        "hs_lastmodifieddate",
        "hs_object_id",
        "pipeline",
    ),
}
DAILY_LIMIT_DEFAULT = 250_000
# Seconds before an update is found by search, a create in a fifth of it (see index.py):
# HubSpot takes seconds after a create and up to about a minute after an update. Scaled by
# the time factor (syncd.sandbox.clock).
SEARCH_LAG_DEFAULT = 30.0
EMAIL_RE = re.compile(r"^[^@\s;,]+@[^@\s;,]+\.[A-Za-z]{2,}$")


@lru_cache(maxsize=4096)
def iso_ms(ms: int) -> str:
    """Epoch milliseconds as HubSpot writes datetimes: ``2024-01-02T03:04:05.678Z``.

    Cached: a batch writes hundreds of records within the same few milliseconds.
    """
    secs, frac = divmod(ms, 1000)
    t = time.gmtime(secs)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{frac:03d}Z"
    )


def parse_time_ms(value: Any) -> int | None:
    """Epoch ms from a search filter value: an integer (string) or an ISO datetime."""
    if value is None:
        return None
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


@dataclass
class HsList:
    """A manual (static) contact list."""

    list_id: str
    name: str
    members: dict[str, int] = field(default_factory=dict)  # record id -> added at (ms)


class PropertyInvalid(Exception):
    """One record's property values failed validation (HubSpot's VALIDATION_ERROR)."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(problems[0]["message"])
        self.problems = problems

    @property
    def code(self) -> str:
        """The first problem's error code (INVALID_EMAIL, PROPERTY_DOESNT_EXIST, …)."""
        return str(self.problems[0]["error"])


class HubSpotSandbox(SandboxBase):
    """In-memory HubSpot portal: CRM objects, properties, lists and associations."""

    vendor = "hubspot"

    def __init__(
        self,
        seed: int = 42,
        *,
        tag_property: str = "syncd_sync_tags",
        daily_limit: int = DAILY_LIMIT_DEFAULT,
        search_rate_limit: tuple[int, float] | None = (5, 1.0),
        strict_properties: bool = True,
        portal_id: int = 12345678,
        search_lag: float | None = None,
    ) -> None:
        """`search_lag` in seconds; None: the vendor's (SEARCH_LAG_DEFAULT, time-scaled)."""
        super().__init__(seed)
        self.tag_property = tag_property
        self.daily_limit = daily_limit
        self.daily_used = 0
        self.search_rate_limit = search_rate_limit
        self.strict_properties = strict_properties
        self.portal_id = portal_id
        self.objects: dict[str, dict[str, HsObject]] = {k: {} for k in OBJECT_TYPE_IDS}
        self.properties = default_properties(tag_property)
        self.email_index: dict[str, str] = {}
        self.lists: dict[str, HsList] = {}
        # (contact id, company id) -> association type ids; 1 marks the primary company.
        self.associations: dict[tuple[str, str], set[int]] = {}
        self.request_times: list[float] = []
        self.index = SearchIndex(scaled(SEARCH_LAG_DEFAULT) if search_lag is None else search_lag)
        self._next_id = 100_000
        self._next_list = 1
        self._last_ms = 0

    # ---- identity and time -------------------------------------------------------------
    def new_id(self) -> str:
        """A fresh record id (numeric string, as HubSpot's)."""
        self._next_id += 1
        return str(self._next_id)

    def now_ms(self) -> int:
        """The clock in epoch ms, never going backwards."""
        self._last_ms = max(self._last_ms, int(time.time() * 1000))
        return self._last_ms

    def correlation_id(self) -> str:
        """A request correlation id (deterministic per seed)."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def error_response(self, status: int, retry_after: float | None) -> web.Response:
        """HubSpot's bodies for injected faults: the RATE_LIMIT body for 429, else a 5xx."""
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        body: dict[str, Any]
        if status == 429:
            body = {
                "status": "error",
                "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": self.correlation_id(),
                "policyName": "TEN_SECONDLY_ROLLING",
            }
        else:
            # HubSpot's 5xx bodies carry a message and correlation id but no category.
            body = {
                "status": "error",
                "message": "internal error",
                "correlationId": self.correlation_id(),
            }
        return web.json_response(body, status=status, headers=headers)

    # ---- property validation -----------------------------------------------------------
    def check_properties(self, obj: str, props: Mapping[str, Any]) -> None:
        """Raise PropertyInvalid as HubSpot would for these values."""
        defs = self.properties[obj]
        problems: list[dict[str, Any]] = []
        for name, value in props.items():
            pdef = defs.get(name)
            if pdef is None:
                if self.strict_properties:
                    problems.append(
                        _problem(name, f'Property "{name}" does not exist', "PROPERTY_DOESNT_EXIST")
                    )
                continue
            text = "" if value is None else str(value)
            if name == "email" and self._bad_email(text):
                problems.append(_problem(name, f"Email address {text} is invalid", "INVALID_EMAIL"))
            elif pdef.type == "enumeration" and text:
                allowed = {o["value"] for o in pdef.options}
                for part in text.lstrip(";").split(";"):
                    if part and part not in allowed:
                        problems.append(
                            _problem(
                                name,
                                f"{part} was not one of the allowed options: "
                                f"[{', '.join(sorted(allowed))}]",
                                "INVALID_OPTION",
                            )
                        )
            elif pdef.type == "number" and text:
                try:
                    float(text)
                except ValueError:
                    problems.append(
                        _problem(name, f"{text} is not a valid number", "INVALID_INTEGER")
                    )
        if problems:
            raise PropertyInvalid(problems)

    def _bad_email(self, text: str) -> bool:
        return bool(text) and (
            not EMAIL_RE.match(text.strip()) or text.strip().lower() in self.faults.fail_emails
        )

    # ---- writes ------------------------------------------------------------------------
    def create(self, obj: str, props: Mapping[str, Any], *, endpoint: str) -> HsObject:
        """Create a record (values already checked)."""
        now = self.now_ms()
        rid = self.new_id()
        rec = HsObject(rid, {}, now, now)
        self.index.before_write(obj, rid, None)
        self._apply(obj, rec, props, now)
        self.objects[obj][rid] = rec
        self.index.after_write(obj, rec, created=True)
        self.record_write(endpoint, obj, rid, dict(props), key=self._key(obj, rec), created=True)
        return rec

    def update(self, obj: str, rec: HsObject, props: Mapping[str, Any], *, endpoint: str) -> None:
        """Apply property values to an existing record (values already checked)."""
        self.index.before_write(obj, rec.id, rec)
        self._apply(obj, rec, props, self.now_ms())
        self.index.after_write(obj, rec)
        self.record_write(endpoint, obj, rec.id, dict(props), key=self._key(obj, rec))

    def _key(self, obj: str, rec: HsObject) -> str | None:
        return rec.properties.get("email") if obj == "contacts" else rec.properties.get("name")

    def _apply(self, obj: str, rec: HsObject, props: Mapping[str, Any], now: int) -> None:
        defs = self.properties[obj]
        for name, value in props.items():
            pdef = defs.get(name)
            if pdef is not None and pdef.read_only:
                continue  # HubSpot ignores values for read-only properties
            text = None if value is None or value == "" else str(value)
            if name == OPTOUT_PROPERTY and rec.properties.get(name) == "true":
                continue  # an opt-out is only lifted by the contact, never by an API write
            if pdef is not None and pdef.field_type == "checkbox" and text and text[0] == ";":
                # A leading ';' appends to a multi-checkbox instead of replacing it.
                current = [v for v in (rec.properties.get(name) or "").split(";") if v]
                extra = [v for v in text.split(";") if v and v not in current]
                text = ";".join(current + extra) or None
            if name == "email":
                old = rec.properties.get("email")
                if old:
                    self.email_index.pop(old.lower(), None)
                if text:
                    text = text.strip()
                    self.email_index[text.lower()] = rec.id
            if name == "domain" and text:
                text = text.strip().lower()
            rec.properties[name] = text
        rec.updated_ms = now
        rec.properties["hs_object_id"] = rec.id
        rec.properties["createdate"] = iso_ms(rec.created_ms)
        rec.properties[MODIFIED_PROPERTY[obj]] = iso_ms(now)

    def archive(self, obj: str, rid: str) -> bool:
        """Archive (soft-delete) a record; False when it does not exist."""
        rec = self.objects[obj].get(rid)
        if rec is None or rec.archived:
            return False
        self.index.before_write(obj, rid, rec)
        rec.archived = True
        rec.archived_ms = self.now_ms()
        self.index.after_write(obj, rec)
        if obj == "contacts" and rec.properties.get("email"):
            self.email_index.pop(str(rec.properties["email"]).lower(), None)
        self.record_write("archive", obj, rid, {}, key=self._key(obj, rec))
        return True

    def opt_out(self, contact_id: str) -> None:
        """The contact unsubscribed from all email (as if through a preferences page)."""
        rec = self.objects["contacts"][contact_id]
        self.index.before_write("contacts", contact_id, rec)
        rec.properties[OPTOUT_PROPERTY] = "true"
        rec.updated_ms = self.now_ms()
        rec.properties["lastmodifieddate"] = iso_ms(rec.updated_ms)
        self.index.after_write("contacts", rec)

    def ensure_option(self, obj: str, prop: str, value: str) -> None:
        """Add an option to an enumeration property (test convenience)."""
        pdef = self.properties[obj][prop]
        if value not in {o["value"] for o in pdef.options}:
            pdef.options.append(option(value, len(pdef.options)))

    def apply_faults(self, body: dict[str, Any]) -> None:
        """Also ``search_lag`` (seconds, not scaled; 0 makes search instantly consistent)."""
        if "search_lag" in body:
            lag = body["search_lag"]
            if isinstance(lag, bool) or not isinstance(lag, int | float) or lag < 0:
                raise ValueError("search_lag must be a number of seconds >= 0")
        super().apply_faults(body)
        if "search_lag" in body:
            self.index.set_lag(float(body["search_lag"]))

    # ---- reads -------------------------------------------------------------------------
    def searchable(self, obj: str) -> Iterable[HsObject]:
        """The live records as search sees them (its index lags behind writes)."""
        return self.index.searchable(obj, self.objects[obj].values())

    def get(self, obj: str, rid: str, *, archived: bool = False) -> HsObject | None:
        """A record by id (archived ones only when asked for)."""
        rec = self.objects[obj].get(rid)
        if rec is None or rec.archived != archived:
            return None
        return rec

    def by_email(self, email: str) -> HsObject | None:
        """A live contact by email (case-insensitive)."""
        rid = self.email_index.get(email.strip().lower())
        return self.objects["contacts"].get(rid) if rid else None

    def lookup(self, obj: str, value: str, id_property: str | None) -> HsObject | None:
        """A live record by id or by a unique property."""
        if not id_property or id_property == "hs_object_id":
            return self.get(obj, value)
        if obj == "contacts" and id_property == "email":
            return self.by_email(value)
        for rec in self.objects[obj].values():
            if not rec.archived and rec.properties.get(id_property) == value:
                return rec
        return None

    def tags_of(self, contact_id: str) -> list[str]:
        """The contact's sync tags."""
        raw = self.objects["contacts"][contact_id].properties.get(self.tag_property) or ""
        return [t for t in raw.split(";") if t]

    def to_json(
        self, obj: str, rec: HsObject, wanted: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """The API shape of a record with the requested (or default) properties."""
        names = list(DEFAULT_PROPERTIES[obj]) if wanted is None else list(wanted)
        for always in ("hs_object_id", CREATED_PROPERTY[obj], MODIFIED_PROPERTY[obj]):
            if always not in names:
                names.append(always)
        props = {n: rec.properties.get(n) for n in names if n in self.properties[obj]}
        out: dict[str, Any] = {
            "id": rec.id,
            "properties": props,
            "createdAt": iso_ms(rec.created_ms),
            "updatedAt": iso_ms(rec.updated_ms),
            "archived": rec.archived,
        }
        if rec.archived and rec.archived_ms is not None:
            out["archivedAt"] = iso_ms(rec.archived_ms)
        return out

    # ---- lists and associations --------------------------------------------------------
    def create_list(self, name: str) -> str:
        """A new manual contact list; returns its id."""
        lid = str(self._next_list)
        self._next_list += 1
        self.lists[lid] = HsList(lid, name)
        return lid

    def associate(
        self,
        from_id: str,
        company_id: str,
        *,
        primary: bool = True,
        types: tuple[int, int] = (1, 279),
    ) -> None:
        """Associate a contact (types 1/279) or a deal (5/341) with a company; a primary one
        replaces the previous primary (HubSpot keeps one "with Primary Company" per record).
        Ids are unique across objects here, so (from, to) keys every association."""
        primary_type, plain_type = types
        if primary:
            for key, held in self.associations.items():
                if key[0] == from_id:
                    held.discard(primary_type)
        held = self.associations.setdefault((from_id, company_id), {plain_type})
        if primary:
            held.add(primary_type)

    def dissociate(self, from_id: str, company_id: str) -> bool:
        """Remove every association between a record and a company."""
        return self.associations.pop((from_id, company_id), None) is not None

    def primary_company(self, from_id: str) -> str | None:
        """The contact's or deal's primary company id."""
        for (rid, coid), types in self.associations.items():
            if rid == from_id and types & {1, 5}:
                return coid
        return None


def _problem(name: str, message: str, code: str) -> dict[str, Any]:
    return {
        "isValid": False,
        "message": message,
        "error": code,
        "name": name,
        "localizedErrorMessage": message,
    }

"""Data of the Salesforce simulator: schema, records, ids, API usage and tokens."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web

from syncd.sandbox.common import SandboxBase
from syncd.sandbox.salesforce.soql import now_utc, whole_second

EXTERNAL_ID = "Syncd_Hub_Id__c"
PREFIXES = {"Contact": "003", "Lead": "00Q", "Account": "001", "Opportunity": "006"}
_CHECK = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class FieldSpec:
    """One field as describe reports it."""

    type: str
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    defaulted: bool = False
    length: int = 0
    external_id: bool = False
    unique: bool = False


def _s(length: int, **kw: Any) -> FieldSpec:
    return FieldSpec("string", length=length, **kw)


_SYSTEM = {
    "Id": FieldSpec("id", nillable=False, createable=False, updateable=False, defaulted=True,
                    length=18),
    "IsDeleted": FieldSpec("boolean", nillable=False, createable=False, updateable=False,
                           defaulted=True),
    "CreatedDate": FieldSpec("datetime", nillable=False, createable=False, updateable=False,
                             defaulted=True),
    "LastModifiedDate": FieldSpec("datetime", nillable=False, createable=False,
                                  updateable=False, defaulted=True),
    "SystemModstamp": FieldSpec("datetime", nillable=False, createable=False, updateable=False,
                                defaulted=True),
}  # fmt: skip
_PERSON = {
    "FirstName": _s(40),
    "LastName": _s(80, nillable=False),
    "Email": FieldSpec("email", length=80),
    "Phone": FieldSpec("phone", length=40),
    "Title": _s(128),
    "Description": FieldSpec("textarea", length=32000),
}
_CONVERSION = {
    "IsConverted": FieldSpec("boolean", nillable=False, createable=False, updateable=False,
                             defaulted=True),
    "ConvertedDate": FieldSpec("date", createable=False, updateable=False),
    "ConvertedContactId": FieldSpec("reference", createable=False, updateable=False, length=18),
    "ConvertedAccountId": FieldSpec("reference", createable=False, updateable=False, length=18),
    "ConvertedOpportunityId": FieldSpec("reference", createable=False, updateable=False,
                                        length=18),
}  # fmt: skip


def build_schema(external_id: str) -> dict[str, dict[str, FieldSpec]]:
    """Field specs per object; `external_id` is the unique external id field's name."""
    ext = {external_id: FieldSpec("string", length=255, external_id=True, unique=True)}
    return {
        "Contact": {
            **_SYSTEM, **_PERSON, **ext,
            "AccountId": FieldSpec("reference", length=18),
            "HasOptedOutOfEmail": FieldSpec("boolean", nillable=False, defaulted=True),
        },
        "Lead": {
            **_SYSTEM, **_PERSON, **ext, **_CONVERSION,
            "Company": _s(255, nillable=False),
            "Status": FieldSpec("picklist", nillable=False, defaulted=True, length=40),
            "LeadSource": FieldSpec("picklist", length=40),
        },
        "Account": {
            **_SYSTEM, **ext,
            "Name": _s(255, nillable=False),
            "Phone": FieldSpec("phone", length=40),
            "Website": FieldSpec("url", length=255),
            "Industry": FieldSpec("picklist", length=40),
        },
        "Opportunity": {
            **_SYSTEM,
            "Name": _s(120, nillable=False),
            "Amount": FieldSpec("currency"),
            "StageName": FieldSpec("picklist", nillable=False, length=255),
            "CloseDate": FieldSpec("date", nillable=False),
            "AccountId": FieldSpec("reference", length=18),
        },
    }  # fmt: skip


def make_id(prefix: str, n: int) -> str:
    """An 18-character Salesforce id: 3-char prefix, 12-char body, 3-char case checksum."""
    body = ""
    x = n
    for _ in range(9):
        body = _B62[x % 62] + body
        x //= 62
    base = f"{prefix}5g0{body}"
    suffix = ""
    for chunk in (base[0:5], base[5:10], base[10:15]):
        bits = sum(1 << i for i, ch in enumerate(chunk) if "A" <= ch <= "Z")
        suffix += _CHECK[bits]
    return base + suffix


def format_dt(value: datetime) -> str:
    """Salesforce's datetime form: ``2013-05-20T20:49:32.000+0000``."""
    # isoformat does the work in C (strftime and field-by-field formatting cost several
    # times more, twice per rendered record): "…32.000+00:00" -> "…32.000+0000".
    return value.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "+0000"


def to_json(value: Any) -> Any:
    """A stored field value as the REST API renders it."""
    if isinstance(value, datetime):
        return format_dt(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


@dataclass
class QueryCursor:
    """An open query's result set: the selected values of each matched record, as they were
    when the query ran; pages are rendered from it as they are read."""

    obj: str
    fields: tuple[str, ...]
    version: str
    rows: list[dict[str, Any]]


DUPLICATE_RULE_MODES = ("off", "alert", "block")


def duplicate_rules_mode(value: Any) -> str:
    """``off``, ``alert`` or ``block`` from a mode or a switch (true is ``alert``, the action
    of the standard rules: the save is refused unless the request says ``allowSave=true``)."""
    if value is True:
        return "alert"
    if value is False or value is None:
        return "off"
    if str(value) not in DUPLICATE_RULE_MODES:
        raise ValueError(f"duplicate_rules: one of true, false, {', '.join(DUPLICATE_RULE_MODES)}")
    return str(value)


class SalesforceSandbox(SandboxBase):
    """An in-memory Salesforce org: records, API usage, issued tokens and OAuth settings."""

    vendor = "salesforce"

    def __init__(
        self,
        *,
        client_id: str = "sandbox-client-id",
        client_secret: str = "sandbox-client-secret",
        refresh_token: str | None = "sandbox-refresh-token",
        username: str = "integration@example.com",
        jwt_public_key: str | bytes | None = None,
        external_id_field: str = EXTERNAL_ID,
        daily_limit: int = 100_000,
        duplicate_rules: str = "alert",
        seed: int = 42,
    ) -> None:
        super().__init__(seed=seed)
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.username = username
        self.jwt_public_key = jwt_public_key
        self.external_id_field = external_id_field
        self.daily_limit = daily_limit
        self.api_used = 0
        self.duplicate_rules = duplicate_rules_mode(duplicate_rules)
        self.schema = build_schema(external_id_field)
        self.records: dict[str, dict[str, dict[str, Any]]] = {o: {} for o in self.schema}
        self.ext_index: dict[str, dict[str, str]] = {o: {} for o in self.schema}
        self.deleted_log: list[tuple[str, str, datetime]] = []
        self.tokens: set[str] = set()
        self.token_requests = 0
        self.locators: dict[str, QueryCursor] = {}
        self.locked_ids: set[str] = set()
        self.locked_emails: dict[str, int] = {}
        self._counter = 0
        self._lower = {o.lower(): o for o in self.schema}

    # -- schema -------------------------------------------------------------------------

    def object_name(self, raw: str) -> str | None:
        """The canonical object name for `raw` (case-insensitive), or None."""
        return self._lower.get(raw.lower())

    def field_types(self, raw_obj: str) -> dict[str, str] | None:
        """{field: type} for an object, for the SOQL parser."""
        obj = self.object_name(raw_obj)
        if obj is None:
            return None
        return {name: spec.type for name, spec in self.schema[obj].items()}

    def canonical_field(self, obj: str, name: str) -> str | None:
        """The schema's spelling of `name` on `obj` (field names are case-insensitive)."""
        low = name.lower()
        return next((f for f in self.schema[obj] if f.lower() == low), None)

    # -- records ------------------------------------------------------------------------

    def new_id(self, obj: str) -> str:
        """A fresh id for an object."""
        self._counter += 1
        return make_id(PREFIXES[obj], self._counter)

    def insert(
        self, obj: str, fields: Mapping[str, Any], *, at: datetime | None = None
    ) -> dict[str, Any]:
        """Store a new record directly (seeding, benchmarks): no validation, no ledger, no
        duplicate rules. Its datetimes are kept to the second, as Salesforce keeps them."""
        stamp = whole_second(at) if at is not None else now_utc()
        rec: dict[str, Any] = {name: None for name in self.schema[obj]}
        for name, spec in self.schema[obj].items():
            if spec.type == "boolean":
                rec[name] = False
        if obj == "Lead":
            rec["Status"] = "Open - Not Contacted"
        rec.update(fields)
        rec["Id"] = rec.get("Id") or self.new_id(obj)
        for key in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
            value = rec.get(key)
            rec[key] = stamp if value is None else whole_second(value)
        self.records[obj][rec["Id"]] = rec
        ext = rec.get(self.external_id_field) if obj in self.ext_index else None
        if isinstance(ext, str) and ext and self.external_id_field in self.schema[obj]:
            self.ext_index[obj][ext.lower()] = rec["Id"]
        return rec

    def touch(self, rec: dict[str, Any]) -> None:
        """Mark a record modified now."""
        stamp = now_utc()
        rec["LastModifiedDate"] = stamp
        rec["SystemModstamp"] = stamp

    def object_of(self, record_id: str) -> str | None:
        """The object a record id belongs to (collections delete takes bare ids)."""
        return next((o for o, recs in self.records.items() if record_id in recs), None)

    def delete(self, obj: str, record_id: str, *, at: datetime | None = None) -> bool:
        """Soft-delete a record (it stays visible to queryAll and the deleted endpoint)."""
        rec = self.records[obj].get(record_id)
        if rec is None or rec["IsDeleted"]:
            return False
        rec["IsDeleted"] = True
        self.touch(rec)
        if at is not None:
            rec["LastModifiedDate"] = rec["SystemModstamp"] = whole_second(at)
        ext = rec.get(self.external_id_field)
        if isinstance(ext, str):
            self.ext_index[obj].pop(ext.lower(), None)
        self.deleted_log.append((obj, record_id, rec["SystemModstamp"]))
        return True

    def convert_lead(
        self, lead_id: str, *, at: datetime | None = None, with_opportunity: bool = True
    ) -> dict[str, Any]:
        """Convert a lead into a new contact, account and (optionally) opportunity."""
        lead = self.records["Lead"][lead_id]
        when = whole_second(at) if at is not None else now_utc()
        account = self.insert("Account", {"Name": lead.get("Company") or "Converted"}, at=when)
        contact = self.insert(
            "Contact",
            {k: lead.get(k) for k in ("FirstName", "LastName", "Email", "Phone", "Title")}
            | {"AccountId": account["Id"]},
            at=when,
        )
        opp_id = None
        if with_opportunity:
            opp = self.insert(
                "Opportunity",
                {
                    "Name": f"{lead.get('Company') or 'Converted'}-",
                    "StageName": "Prospecting",
                    "CloseDate": when.date(),
                    "AccountId": account["Id"],
                },
                at=when,
            )
            opp_id = opp["Id"]
        lead.update(
            IsConverted=True,
            ConvertedDate=when.date(),
            ConvertedContactId=contact["Id"],
            ConvertedAccountId=account["Id"],
            ConvertedOpportunityId=opp_id,
            Status="Closed - Converted",
            LastModifiedDate=when,
            SystemModstamp=when,
        )
        return lead

    def find_by_external_id(self, obj: str, value: str) -> dict[str, Any] | None:
        """The live record whose external id equals `value` (case-insensitive)."""
        rid = self.ext_index.get(obj, {}).get(value.lower())
        return self.records[obj].get(rid) if rid else None

    def live(self, obj: str) -> list[dict[str, Any]]:
        """Records that are not deleted."""
        return [r for r in self.records[obj].values() if not r["IsDeleted"]]

    def count(self, obj: str) -> int:
        """How many live records an object has."""
        return sum(1 for r in self.records[obj].values() if not r["IsDeleted"])

    def to_api(
        self, obj: str, rec: Mapping[str, Any], fields: tuple[str, ...], version: str
    ) -> dict[str, Any]:
        """A record as the query endpoint renders it."""
        out: dict[str, Any] = {
            "attributes": {
                "type": obj,
                "url": f"/services/data/v{version}/sobjects/{obj}/{rec['Id']}",
            }
        }
        for f in fields:
            out[f] = to_json(rec.get(f))
        return out

    def apply_faults(self, body: dict[str, Any]) -> None:
        """Faults, and the org's duplicate rules (``{"duplicate_rules": true | false |
        "alert" | "block"}``): an org setting, which `reset` leaves as it is."""
        if "duplicate_rules" in body:
            self.duplicate_rules = duplicate_rules_mode(body["duplicate_rules"])
        super().apply_faults(body)

    def limit_header(self) -> str:
        """The ``Sforce-Limit-Info`` value."""
        return f"api-usage={self.api_used}/{self.daily_limit}"

    def error_response(self, status: int, retry_after: float | None) -> web.Response:
        """Salesforce-shaped bodies for injected 503/429 (errors are JSON arrays)."""
        headers = {"Sforce-Limit-Info": self.limit_header()}
        if retry_after is not None:
            headers["Retry-After"] = f"{retry_after:g}"
        if status == 429:
            code, message = "REQUEST_LIMIT_EXCEEDED", "Too many requests; retry later."
        else:
            code, message = "SERVER_UNAVAILABLE", "Server temporarily unavailable."
        return web.json_response(
            [{"message": message, "errorCode": code}], status=status, headers=headers
        )

    def collection_calls(self) -> int:
        """How many sObject Collections write requests reached the simulator."""
        return sum(
            n for k, n in self.requests.items() if "/composite/sobjects" in k and "GET" not in k
        )

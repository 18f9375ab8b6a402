"""HubSpot connector helpers: object names, error classification, records, batch results."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from syncd.errors import (
    AuthError,
    ConfigError,
    QuotaExhausted,
    RateLimited,
    RequestRejected,
    SyncdError,
    TransientError,
)
from syncd.model import ErrorCategory, ObjectType, Record, WriteResult
from syncd.vendors.http import HttpResponse, parse_retry_after

NAME = "hubspot"
BATCH = 100
SEARCH_PAGE = 200
SEARCH_CAP = 10_000
LIST_PAGE = 100
# HubSpot has no separate lead object: leads are contacts (lifecyclestage tells them apart).
OBJECTS = {
    ObjectType.CONTACT: "contacts",
    ObjectType.LEAD: "contacts",
    ObjectType.ACCOUNT: "companies",
    ObjectType.OPPORTUNITY: "deals",
}
MODIFIED = {
    "contacts": "lastmodifieddate",
    "companies": "hs_lastmodifieddate",
    "deals": "hs_lastmodifieddate",
}
BASE_PROPERTIES = {
    "contacts": ("email", "firstname", "lastname", "phone", "company", "lifecyclestage"),
    "companies": ("name", "domain", "phone", "website", "city", "country"),
    "deals": ("dealname", "amount", "dealstage", "pipeline", "closedate"),
}
OPTOUT = "hs_email_optout"
READ_ONLY = frozenset(
    {"hs_object_id", "createdate", "lastmodifieddate", "hs_lastmodifieddate", OPTOUT}
)
TRANSIENT_STATUSES = frozenset({423, 477, 500, 502, 503, 504, 520, 521, 522, 523, 524})


class Rejected(RequestRejected):
    """HubSpot refused a whole call (400/404/409): the batch logic maps it to its records."""

    def __init__(self, resp: HttpResponse) -> None:
        data = _body(resp)
        self.category = str(data.get("category") or "")
        self.vendor_message = str(data.get("message") or f"HTTP {resp.status}")
        self.data = data
        super().__init__(
            f"{NAME}: HTTP {resp.status} {self.category}: {self.vendor_message}",
            status=resp.status,
            body=resp.body[:2000].decode("utf-8", "replace"),
        )

    def result(self) -> WriteResult:
        """This refusal as the result of the one record the call carried."""
        return error_result(self.data, self.status)


def _body(resp: HttpResponse) -> dict[str, Any]:
    try:
        data = resp.json()
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def vendor_message(resp: HttpResponse) -> str:
    """HubSpot's message for an error response (never the request's credentials)."""
    body = _body(resp)
    msg = body.get("message") or resp.body[:200].decode("utf-8", "replace") or f"HTTP {resp.status}"
    return str(msg)


def classify(resp: HttpResponse) -> SyncdError | None:
    """Map a HubSpot error response to the typed error the shared HTTP client acts on."""
    body = _body(resp)
    category = str(body.get("category") or "")
    if resp.status == 401:
        return AuthError(
            f"{NAME}: the access token was rejected ({category or 'HTTP 401'}: "
            f"{vendor_message(resp)}); reconnect HubSpot or replace hub.api_token"
        )
    if resp.status == 403:
        if category == "MISSING_SCOPES" or "scope" in vendor_message(resp).lower():
            return AuthError(f"{NAME}: the private app lacks a scope: {vendor_message(resp)}")
        return ConfigError(f"{NAME}: forbidden: {vendor_message(resp)}")
    if resp.status == 429:
        policy = str(body.get("policyName") or "")
        if policy == "DAILY":
            used, limit = quota_from_headers(resp.headers)
            return QuotaExhausted(
                f"{NAME}: the portal's daily API limit is used up; calls resume after midnight "
                "in the portal's time zone",
                used=used,
                limit=limit,
            )
        return RateLimited(
            f"{NAME}: rate limited ({policy or 'unnamed policy'})", retry_wait(resp, policy)
        )
    if resp.status in TRANSIENT_STATUSES or resp.status >= 500:
        return TransientError(f"{NAME}: HTTP {resp.status}: {vendor_message(resp)}")
    if resp.status in (400, 404, 409, 415, 422):
        return Rejected(resp)
    return None


def retry_wait(resp: HttpResponse, policy: str) -> float:
    """Seconds to wait after a 429: Retry-After, else the policy's own interval."""
    if policy == "SECONDLY":
        default = 1.0
    else:
        interval = resp.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
        try:
            default = int(interval) / 1000.0 if interval else 10.0
        except ValueError:
            default = 10.0
    return parse_retry_after(resp.headers.get("Retry-After"), default)


def quota_from_headers(headers: Mapping[str, str]) -> tuple[int | None, int | None]:
    """(used, limit) of the daily quota from the X-HubSpot-RateLimit-Daily* headers."""
    daily = headers.get("X-HubSpot-RateLimit-Daily")
    remaining = headers.get("X-HubSpot-RateLimit-Daily-Remaining")
    try:
        limit = int(daily) if daily is not None else None
        left = int(remaining) if remaining is not None else None
    except ValueError:
        return None, None
    if limit is None or left is None:
        return None, limit
    return max(limit - left, 0), limit


def parse_hs_datetime(value: Any) -> datetime | None:
    """A HubSpot datetime (ISO ``…Z`` or epoch milliseconds) as an aware datetime."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def to_ms(dt: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return int(dt.timestamp() * 1000)


def parse_cursor(cursor: str | None) -> int | None:
    """A cursor (epoch ms, or an ISO datetime an operator typed) as epoch ms."""
    if not cursor:
        return None
    dt = parse_hs_datetime(cursor)
    if dt is None:
        raise ConfigError(f"{NAME}: cursor {cursor!r} is neither epoch ms nor an ISO datetime")
    return to_ms(dt)


def split_tags(raw: Any) -> frozenset[str]:
    """The values of a multi-checkbox property (``a;b;c``)."""
    if not raw:
        return frozenset()
    return frozenset(t for t in str(raw).split(";") if t)


def to_record(obj: ObjectType, row: Mapping[str, Any], tag_property: str | None) -> Record:
    """A Record from a HubSpot object; tags from the multi-checkbox property."""
    hs_obj = OBJECTS[obj]
    props = dict(row.get("properties") or {})
    modified = parse_hs_datetime(props.get(MODIFIED[hs_obj])) or parse_hs_datetime(
        row.get("updatedAt")
    )
    tags = (
        split_tags(props.get(tag_property))
        if tag_property and hs_obj == "contacts"
        else frozenset()
    )
    return Record(
        object=obj,
        id=str(row["id"]),
        fields=props,
        modified_at=modified,
        created_at=parse_hs_datetime(row.get("createdAt")),
        deleted=bool(row.get("archived", False)),
        tags=tags,
    )


def error_result(err: Mapping[str, Any], status: int | None = None) -> WriteResult:
    """A failed WriteResult from a HubSpot error object (batch error entry or error body)."""
    category = str(err.get("category") or "")
    message = str(err.get("message") or (f"HTTP {status}" if status else "rejected"))
    code = _inner_code(err) or category or (f"HTTP_{status}" if status else "ERROR")
    if category == "CONFLICT" or status == 409:
        cat = ErrorCategory.DUPLICATE
    elif category == "VALIDATION_ERROR":
        cat = ErrorCategory.VALIDATION
    else:
        cat = ErrorCategory.REJECTED
    return WriteResult(ok=False, error_category=cat, error_code=code, error_message=message)


def _inner_code(err: Mapping[str, Any]) -> str | None:
    inner = err.get("errors")
    if isinstance(inner, list) and inner and isinstance(inner[0], dict) and inner[0].get("code"):
        return str(inner[0]["code"])
    # "Property values were not valid: [{…"error":"INVALID_EMAIL"…}]" carries the code inside.
    message = str(err.get("message") or "")
    _, sep, tail = message.partition(": [")
    if sep:
        try:
            problems = json.loads("[" + tail)
        except ValueError:
            return None
        if problems and isinstance(problems[0], dict) and problems[0].get("error"):
            return str(problems[0]["error"])
    return None


def prop_value(value: Any) -> str:
    """A field value as HubSpot wants it: strings; booleans lower-case; lists ``;``-joined."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return str(to_ms(value))
    if isinstance(value, list | tuple | set | frozenset):
        return ";".join(str(v) for v in value)
    return str(value)


def normalize_domain(value: str) -> str:
    """``https://www.Example.com/`` -> ``example.com`` (how HubSpot keys company domains)."""
    v = value.strip().lower()
    for prefix in ("https://", "http://"):
        v = v.removeprefix(prefix)
    v = v.removeprefix("www.")
    return v.split("/", 1)[0]


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """Consecutive slices of at most `size` items."""
    return [items[i : i + size] for i in range(0, len(items), size)]

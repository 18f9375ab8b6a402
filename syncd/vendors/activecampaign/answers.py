"""ActiveCampaign wire details: error classification, dates, records and cursors."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from syncd.errors import AuthError, RateLimited, SyncdError, TransientError
from syncd.model import ErrorCategory, ObjectType, Record, WriteResult
from syncd.vendors.http import HttpResponse, parse_retry_after

NAME = "activecampaign"
PAGE = 100
STANDARD_CONTACT_FIELDS = ("email", "firstName", "lastName", "phone")
# Accounts and deals share one simple shape (read and written one at a time); contacts don't.
PLAIN = {ObjectType.ACCOUNT: "account", ObjectType.OPPORTUNITY: "deal"}
STAMPS = {"account": ("createdTimestamp", "updatedTimestamp"), "deal": ("cdate", "mdate")}
# The same basic syntax check AC applies; rows failing it never leave the connector.
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Equal-second updates are common, so incremental reads re-read this much before the cursor.
CURSOR_OVERLAP = timedelta(seconds=1)


class Rejected(SyncdError):
    """A 4xx answer about the request itself (400/404/422); the connector reads the body."""

    def __init__(self, resp: HttpResponse) -> None:
        super().__init__(f"{NAME}: HTTP {resp.status}: {vendor_message(resp)}")
        self.resp = resp


def vendor_message(resp: HttpResponse) -> str:
    """The human message of an AC error body (``message``, ``errors[].title``, v1 text)."""
    try:
        body = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return resp.body[:200].decode("utf-8", "replace")
    if isinstance(body, dict):
        if isinstance(body.get("errors"), list) and body["errors"]:
            return "; ".join(str(e.get("title", e)) for e in body["errors"] if isinstance(e, dict))
        for key in ("message", "result_message"):
            if body.get(key):
                return str(body[key])
    return str(body)[:200]


def classify(resp: HttpResponse) -> SyncdError | None:
    """Map an AC error response to the typed error the shared HTTP client acts on."""
    if resp.status in (401, 403):
        return AuthError(
            f"{NAME}: the API token was rejected (HTTP {resp.status}: {vendor_message(resp)}); "
            "check hub.api_token and the account's API access"
        )
    if resp.status == 429:
        return RateLimited(
            f"{NAME}: rate limited: {vendor_message(resp)}",
            parse_retry_after(resp.headers.get("Retry-After"), 1.0),
        )
    if resp.status >= 500:
        return TransientError(f"{NAME}: HTTP {resp.status}: {vendor_message(resp)}")
    if resp.status in (400, 404, 409, 422):
        return Rejected(resp)
    return None


def parse_ac_datetime(value: Any) -> datetime | None:
    """AC datetimes (``2024-01-02T10:11:12-06:00``) as aware datetimes."""
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace(" ", "T"))
    except ValueError:
        return None


def contact_record(row: Mapping[str, Any], tags: frozenset[str] = frozenset()) -> Record:
    """A Record from an AC contact object."""
    fields: dict[str, Any] = {k: row.get(k) or "" for k in STANDARD_CONTACT_FIELDS}
    return Record(
        object=ObjectType.CONTACT,
        id=str(row["id"]),
        fields=fields,
        modified_at=parse_ac_datetime(row.get("udate")),
        created_at=parse_ac_datetime(row.get("cdate")),
        deleted=str(row.get("deleted", "0")) == "1",
        tags=tags,
    )


def plain_record(obj: ObjectType, row: Mapping[str, Any], created: str, updated: str) -> Record:
    """A Record from an account or deal object."""
    fields = {k: v for k, v in row.items() if k not in ("links", "id")}
    return Record(
        object=obj,
        id=str(row["id"]),
        fields=fields,
        modified_at=parse_ac_datetime(row.get(updated)),
        created_at=parse_ac_datetime(row.get(created)),
    )


@dataclass(frozen=True)
class Cursor:
    """Where an incremental contact read stands.

    ``since`` is the lower bound the read started from, ``after_id`` the last id delivered
    (paging is by id, so a resumed read continues the same query) and ``newest`` the newest
    udate seen. A finished read hands out just ``newest`` as the next ``since``.
    """

    since: str | None
    after_id: int = 0
    newest: str | None = None

    def encode(self) -> str | None:
        """The string the engine stores."""
        if self.after_id == 0:
            return self.newest or self.since
        return json.dumps({"since": self.since, "after": self.after_id, "newest": self.newest})

    @classmethod
    def decode(cls, raw: str | None) -> Cursor:
        """Parse a stored cursor (a bare AC datetime or a resume object)."""
        if not raw:
            return cls(None)
        if raw.startswith("{"):
            data = json.loads(raw)
            return cls(data.get("since"), int(data.get("after", 0)), data.get("newest"))
        return cls(raw)


def newer(a: str | None, b: str | None) -> str | None:
    """The later of two AC datetimes (None-safe)."""
    da, db = parse_ac_datetime(a), parse_ac_datetime(b)
    if da is None:
        return b
    if db is None:
        return a
    return a if da >= db else b


def query_since(since: str | None) -> str | None:
    """The updated_after value for a cursor: a little before it, so equal seconds re-read."""
    dt = parse_ac_datetime(since)
    if dt is None:
        return None
    return (dt - CURSOR_OVERLAP).isoformat(timespec="seconds")


def record_error(resp: HttpResponse) -> WriteResult:
    """A failed WriteResult from an AC 4xx body."""
    message = vendor_message(resp)
    code = "rejected"
    category = ErrorCategory.REJECTED
    try:
        body = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        first = body["errors"][0]
        if isinstance(first, dict):
            code = str(first.get("code") or code)
    if code == "duplicate":
        category = ErrorCategory.DUPLICATE
    elif code in ("email_invalid", "field_missing", "invalid") or resp.status == 400:
        category = ErrorCategory.VALIDATION
    elif resp.status == 404:
        code = "not_found"
    return WriteResult(
        ok=False,
        error_category=category,
        error_code=f"HTTP_{resp.status}_{code}".upper(),
        error_message=message,
    )


def failed(category: ErrorCategory, code: str, message: str) -> WriteResult:
    """A failed WriteResult built by the connector itself."""
    return WriteResult(ok=False, error_category=category, error_code=code, error_message=message)


def failure_indices(body: Any) -> dict[int, str]:
    """Row index -> reason from a bulk import 400 ``failureReasons`` (list or dict forms)."""
    out: dict[int, str] = {}
    reasons = body.get("failureReasons") if isinstance(body, dict) else None
    items: list[tuple[Any, Any]] = []
    if isinstance(reasons, dict):
        items = list(reasons.items())
    elif isinstance(reasons, list):
        for r in reasons:
            if isinstance(r, dict):
                items.append((r.get("index", r.get("contact")), r.get("reasons", r)))
            else:
                m = re.search(r"(?:contacts\[|index\s*)(\d+)", str(r))
                items.append((m.group(1) if m else None, r))
    for idx, why in items:
        try:
            i = int(idx)
        except (TypeError, ValueError):
            continue
        text = "; ".join(map(str, why)) if isinstance(why, list) else str(why)
        out[i] = text
    return out

"""Salesforce wire details: object names, datetimes, error classification, API usage."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from urllib.parse import urlsplit

from syncd.errors import (
    AuthError,
    ConfigError,
    QuotaExhausted,
    RateLimited,
    SyncdError,
    TransientError,
)
from syncd.model import ObjectType
from syncd.vendors.http import HttpResponse, parse_retry_after

SOBJECT = {
    ObjectType.CONTACT: "Contact",
    ObjectType.LEAD: "Lead",
    ObjectType.ACCOUNT: "Account",
    ObjectType.OPPORTUNITY: "Opportunity",
}
# The most records one sObject Collections call takes; queries by id take as many at a time.
BATCH = 200
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")


@lru_cache(maxsize=4096)  # a pull page repeats stamps a lot; datetimes are immutable
def parse_sf_datetime(value: str) -> datetime:
    """A Salesforce or ISO datetime (``…000+0000``, ``…Z``, ``…+00:00``) as aware UTC."""
    s = value.strip().replace("Z", "+00:00")
    # "+0000" -> "+00:00" (what r"[+-]\d{4}$" finds, without a regex: this runs per record)
    if len(s) >= 5 and s[-5] in "+-" and s[-4:].isdecimal():
        s = s[:-2] + ":" + s[-2:]
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def iso(value: datetime) -> str:
    """The cursor form: ISO 8601 with milliseconds and offset."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


def _first_error(resp: HttpResponse) -> tuple[str, str]:
    try:
        body = resp.json()
    except ValueError:
        return "", ""
    item = body[0] if isinstance(body, list) and body else body
    if isinstance(item, dict):
        return str(item.get("errorCode", "")), str(item.get("message", ""))
    return "", ""


def classify(resp: HttpResponse) -> SyncdError | None:
    """Turn a non-2xx Salesforce response into the typed error the engine acts on."""
    code, message = _first_error(resp)
    where = urlsplit(resp.url).path
    text = f"salesforce: {where}: HTTP {resp.status}" + (
        f" {code}: {message[:300]}" if code else ""
    )
    if resp.status == 401:
        return AuthError(f"{text}; the session was rejected after re-authenticating")
    if resp.status == 403 and code == "REQUEST_LIMIT_EXCEEDED":
        used, limit = limit_info(resp)
        return QuotaExhausted(text, used=used, limit=limit)
    if resp.status == 429:
        return RateLimited(text, parse_retry_after(resp.headers.get("Retry-After"), 5.0))
    if resp.status >= 500:
        return TransientError(text)
    if resp.status == 403:
        return AuthError(f"{text}; check the integration user's permissions")
    # MALFORMED_QUERY, INVALID_FIELD, INVALID_TYPE and the like: the mapping or config is
    # wrong for this org, which retrying cannot fix.
    return ConfigError(text)


def limit_info(resp: HttpResponse) -> tuple[int | None, int | None]:
    header = next((v for k, v in resp.headers.items() if k.lower() == "sforce-limit-info"), "")
    m = _LIMIT_INFO.search(header)
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)

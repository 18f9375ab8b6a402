"""What the overview's three faces share: query parsing, row shapes and JSON schemas.

The admin API, the web page and (through the API) the CLI all use these, so a filter or a
column means the same thing everywhere.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from syncd.errors import StoreError
from syncd.model import Direction, EntryStatus, ErrorCategory, ObjectType, QueueEntry
from syncd.store.types import EntryFilter, IntegrationErrorRecord, LinkFilter, RecordLink
from syncd.web.api import CONTROL_KEY, ApiError
from syncd.web.hints import hint

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
MAX_ID = 2**63 - 1  # the stores' BIGINT
STORE_DOWN_KEY = web.AppKey("overview_store_down_since", dict)

# -- OpenAPI fragments ------------------------------------------------------------------------
TS: dict[str, Any] = {"type": "string", "format": "date-time", "nullable": True}
# A moment a filter may name: years 1000 to 9998 (MariaDB's DATETIME starts at 1000, and
# any offset keeps such a moment inside Python's calendar once moved to UTC).
YEARS = (1000, 9998)
MOMENT: dict[str, Any] = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^(1[0-9]{3}|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-",
}
STR_N: dict[str, Any] = {"type": "string", "nullable": True}


def _q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _enum(values: Any) -> dict[str, Any]:
    return {"type": "string", "enum": [v.value for v in values]}


_STATUS = "(pending|processing|processed|error|excluded)"
STATUS_PATTERN = f"^{_STATUS}(,{_STATUS})*$"
ENTRY_PARAMS: tuple[dict[str, Any], ...] = (
    _q("status", {"type": "string", "pattern": STATUS_PATTERN}, "comma-separated statuses"),
    _q("object", _enum(ObjectType), "object"),
    _q("direction", _enum(Direction), "direction"),
    _q("source", {"type": "string"}, "webhook, poll, pull or a dbsync name"),
    _q("error_category", _enum(ErrorCategory), "error category"),
    _q("created_after", MOMENT, "created at or after"),
    _q("created_before", MOMENT, "created before"),
    _q("updated_after", MOMENT, "changed at or after"),
    _q("updated_before", MOMENT, "changed before"),
    _q("q", {"type": "string"}, "substring of email or name"),
)
PAGE_PARAMS: tuple[dict[str, Any], ...] = (
    _q(
        "before",
        {"type": "integer", "minimum": 1, "maximum": MAX_ID},
        "cursor: entries with a smaller id",
    ),
    _q("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "page size"),
)
LINK_PARAMS: tuple[dict[str, Any], ...] = (
    _q("object", _enum(ObjectType), "object"),
    _q("status", {"type": "string"}, "link status (linked, converted …)"),
    _q("deleted_side", {"type": "string", "enum": ["hub", "crm"]}, "deleted on this side"),
    _q("synced_after", MOMENT, "last synced at or after"),
    _q("synced_before", MOMENT, "last synced before"),
    _q("q", {"type": "string"}, "substring of email or name"),
)

INTEGRATION_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["direction", "category", "message", "since", "hint"],
    "properties": {
        "direction": {"type": "string"},
        "category": {"type": "string"},
        "message": {"type": "string"},
        "since": TS,
        "updated_at": TS,
        "hint": {"type": "string"},
    },
}
INTEGRATION_ERRORS_SCHEMA: dict[str, Any] = {"type": "array", "items": INTEGRATION_ERROR_SCHEMA}

ENTRY_ROW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "object", "direction", "status", "created_at", "updated_at", "attempts"],
    "properties": {
        "id": {"type": "integer"},
        "record_key": {"type": "string"},
        "name": STR_N,
        "email": STR_N,
        "object": {"type": "string"},
        "direction": {"type": "string"},
        "source": {"type": "string"},
        "status": {"type": "string"},
        "created_at": TS,
        "updated_at": TS,
        "attempts": {"type": "integer"},
        "error_category": STR_N,
        "error_message": STR_N,
    },
}
ENTRY_DETAIL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [*ENTRY_ROW_SCHEMA["required"], "payload", "transferred", "skipped_fields"],
    "properties": {
        **ENTRY_ROW_SCHEMA["properties"],
        "event": {"type": "string"},
        "payload": {"type": "object"},
        "changed_fields": {"type": "array", "items": {"type": "string"}},
        "transferred": {"type": "object"},
        "transferred_fields": {"type": "object"},
        "skipped_fields": {"type": "object", "additionalProperties": {"type": "string"}},
        "excluded_reason": STR_N,
        "error": {
            "type": "object",
            "nullable": True,
            "properties": {
                "category": STR_N,
                "code": STR_N,
                "message": STR_N,
                "hint": {"type": "string"},
            },
        },
        "next_attempt_at": TS,
        "run_id": {"type": "integer", "nullable": True},
    },
}
LINK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "object", "status"],
    "properties": {
        "id": {"type": "integer"},
        "object": {"type": "string"},
        "hub_id": STR_N,
        "crm_id": STR_N,
        "email": STR_N,
        "name": STR_N,
        "sync_tags": {"type": "array", "items": {"type": "string"}},
        "status": {"type": "string"},
        "deleted_side": STR_N,
        "deleted_at": TS,
        "last_synced_at": TS,
    },
}
LINK_COLUMNS = (
    "id",
    "object",
    "hub_id",
    "crm_id",
    "email",
    "name",
    "sync_tags",
    "status",
    "deleted_side",
    "deleted_at",
    "last_synced_at",
)


# -- parsing ---------------------------------------------------------------------------------
def iso(dt: datetime | None) -> str | None:
    """ISO 8601 in UTC, or None."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat()


def parse_time(name: str, raw: str | None) -> datetime | None:
    """An ISO 8601 moment (naive means UTC) in years 1000 to 9998; absent is None, anything
    else is 400 (so no moment fails later, moved to UTC or compared in a store)."""
    if raw is None:
        return None
    try:
        dt = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ApiError(400, f"{name}: not an ISO 8601 date-time: {raw[:60]!r}") from None
    if not YEARS[0] <= dt.year <= YEARS[1]:
        raise ApiError(400, f"{name}: out of range (years {YEARS[0]} to {YEARS[1]})")
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _enum_value(name: str, raw: str | None, kind: Any) -> Any:
    if raw is None:
        return None
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(v.value for v in kind)
        raise ApiError(400, f"{name}: must be one of {allowed}") from None


def parse_int(name: str, raw: str | None, *, low: int, high: int | None = None) -> int | None:
    """An integer query value in [low, high]; 400 otherwise."""
    if raw is None:
        return None
    text = raw.strip()
    # ASCII digits only: str.isdigit also accepts "²" and "¹", which int() refuses.
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise ApiError(400, f"{name}: must be a whole number (digits 0-9)")
    value = int(text)
    high = MAX_ID if high is None else high
    if value < low or (high is not None and value > high):
        raise ApiError(400, f"{name}: must be {low}..{high}")
    return value


def parse_statuses(raw: str | None) -> tuple[EntryStatus, ...]:
    """Comma-separated statuses, e.g. ``error,excluded``."""
    if raw is None:
        return ()
    if not re.fullmatch(STATUS_PATTERN, raw):
        allowed = ", ".join(s.value for s in EntryStatus)
        raise ApiError(400, f"status: comma-separated, each one of {allowed}")
    return tuple(EntryStatus(p) for p in raw.split(","))


def present(query: Mapping[str, str]) -> dict[str, str]:
    """Only the non-empty values (an HTML form sends every field, empty or not)."""
    return {k: v for k, v in query.items() if v.strip()}


def entry_filter(query: Mapping[str, str]) -> EntryFilter:
    """The queue filter named by query parameters (shared by API, page and retry)."""
    text = (query.get("q") or "").strip() or None
    return EntryFilter(
        status=parse_statuses(query.get("status")),
        direction=_enum_value("direction", query.get("direction"), Direction),
        object=_enum_value("object", query.get("object"), ObjectType),
        source=(query.get("source") or "").strip() or None,
        created_after=parse_time("created_after", query.get("created_after")),
        created_before=parse_time("created_before", query.get("created_before")),
        updated_after=parse_time("updated_after", query.get("updated_after")),
        updated_before=parse_time("updated_before", query.get("updated_before")),
        text=text,
        error_category=_enum_value("error_category", query.get("error_category"), ErrorCategory),
    )


def page_args(query: Mapping[str, str], cursor: str = "before") -> tuple[int | None, int]:
    """(cursor id, limit) from query parameters."""
    before = parse_int(cursor, query.get(cursor), low=0 if cursor == "after" else 1)
    limit = parse_int("limit", query.get("limit"), low=1, high=MAX_LIMIT) or DEFAULT_LIMIT
    return before, limit


def link_filter(query: Mapping[str, str]) -> LinkFilter:
    """The record-link filter named by query parameters."""
    side = query.get("deleted_side")
    if side not in (None, "hub", "crm"):
        raise ApiError(400, "deleted_side: must be hub or crm")
    return LinkFilter(
        object=_enum_value("object", query.get("object"), ObjectType),
        status=(query.get("status") or "").strip() or None,
        deleted_side=side,
        synced_after=parse_time("synced_after", query.get("synced_after")),
        synced_before=parse_time("synced_before", query.get("synced_before")),
        text=(query.get("q") or "").strip() or None,
    )


# -- shapes ------------------------------------------------------------------------------------
def entry_row(e: QueueEntry) -> dict[str, Any]:
    """One queue row: who, what, which way, how it stands."""
    return {
        "id": e.id,
        "record_key": e.record_key,
        "name": e.name,
        "email": e.email,
        "object": e.object.value,
        "direction": e.direction.value,
        "source": e.source,
        "status": e.status.value,
        "created_at": iso(e.created_at),
        "updated_at": iso(e.updated_at),
        "attempts": e.attempts,
        "error_category": e.error_category.value if e.error_category else None,
        # The message as the vendor (or the validation) gave it: the category alone does
        # not say which field or rule, and the list is where an operator looks first.
        "error_message": e.error_message if e.error_category else None,
    }


def entry_detail(e: QueueEntry) -> dict[str, Any]:
    """The full entry: payload, what was written, what was skipped, and why it failed."""
    body = entry_row(e)
    transferred = dict(e.transferred)
    fields = transferred.get("fields")
    excluded = e.status is EntryStatus.EXCLUDED
    error = None
    if e.status is EntryStatus.ERROR or (e.error_category and not excluded):
        error = {
            "category": e.error_category.value if e.error_category else None,
            "code": e.error_code,
            "message": e.error_message,
            "hint": hint(e.error_category, e.error_code, e.error_message),
        }
    body.update(
        event=e.event,
        payload=dict(e.payload),
        changed_fields=sorted(e.changed_fields),
        transferred=transferred,
        transferred_fields=dict(fields) if isinstance(fields, Mapping) else {},
        skipped_fields=dict(e.skipped_fields),
        excluded_reason=e.error_message if excluded else None,
        error=error,
        next_attempt_at=iso(e.next_attempt_at),
        run_id=e.run_id,
    )
    return body


def link_row(link: RecordLink) -> dict[str, Any]:
    """One record link as the records view and the export show it."""
    return {
        "id": link.id,
        "object": link.object.value,
        "hub_id": link.hub_id,
        "crm_id": link.crm_id,
        "email": link.email,
        "name": link.name,
        "sync_tags": sorted(link.sync_tags),
        "status": link.status,
        "deleted_side": link.deleted_side,
        "deleted_at": iso(link.deleted_at),
        "last_synced_at": iso(link.last_synced_at),
    }


def integration_error_row(err: IntegrationErrorRecord) -> dict[str, Any]:
    """An integration-wide error with its since-when, direction and hint."""
    return {
        "direction": err.direction.value,
        "category": err.category.value,
        "message": err.message,
        "since": iso(err.since),
        "updated_at": iso(err.updated_at),
        "hint": hint(err.category, None, err.message),
    }


async def integration_errors(app: web.Application) -> list[dict[str, Any]]:
    """Active integration errors; an unreachable store is one itself (since its first miss)."""
    control = app[CONTROL_KEY]
    down = app[STORE_DOWN_KEY]
    try:
        rows = [integration_error_row(e) for e in await control.store.integration_errors()]
    except StoreError as exc:
        since = down.setdefault("since", time.time())
        return [
            {
                "direction": "all",
                "category": ErrorCategory.STORE.value,
                "message": str(exc),
                "since": iso(datetime.fromtimestamp(since, UTC)),
                "updated_at": iso(datetime.now(UTC)),
                "hint": hint(ErrorCategory.STORE, None, None),
            }
        ]
    down.pop("since", None)
    return sorted(rows, key=lambda r: (r["since"] or "", r["direction"]))


def setup(app: web.Application) -> None:
    """Per-app state the overview keeps (idempotent)."""
    if STORE_DOWN_KEY not in app:
        app[STORE_DOWN_KEY] = {}

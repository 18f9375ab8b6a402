"""Admin API of the queue: list, detail, delete a pending entry, retry, integration errors."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from syncd.errors import StoreError
from syncd.logging import get_logger
from syncd.model import EntryStatus
from syncd.web.api import CONTROL_KEY, ERROR_SCHEMA, ApiError, ApiRegistry, read_json
from syncd.web.components import ENGINE_KEY
from syncd.web.overview_model import (
    ENTRY_DETAIL_SCHEMA,
    ENTRY_PARAMS,
    ENTRY_ROW_SCHEMA,
    INTEGRATION_ERRORS_SCHEMA,
    MAX_ID,
    PAGE_PARAMS,
    entry_detail,
    entry_filter,
    entry_row,
    integration_errors,
    page_args,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = get_logger("syncd.overview")

NOW_PARAM = {
    "name": "now",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean"},
    "description": "also ask the engine for a flush right away",
}
LIST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["entries", "next_cursor", "integration_errors"],
    "properties": {
        "entries": {"type": "array", "items": ENTRY_ROW_SCHEMA},
        "next_cursor": {"type": "integer", "nullable": True},
        "integration_errors": INTEGRATION_ERRORS_SCHEMA,
    },
}
RETRY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["retried", "flush"],
    "properties": {
        "retried": {"type": "integer"},
        "flush": {"type": "string", "enum": ["requested", "next", "unavailable"]},
    },
}
RETRY_BODY: dict[str, Any] = {
    "type": "object",
    "description": "a selection of entry ids; without it every error entry matching the"
    " query filter (the list's parameters) is retried",
    "properties": {
        "ids": {
            "type": "array",
            "items": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
            "maxItems": 10000,
        },
    },
}
DELETE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["deleted"],
    "properties": {"deleted": {"type": "integer"}},
}
CONFLICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "entry_status"],
    "properties": {"error": {"type": "string"}, "entry_status": {"type": "string"}},
}

DELETE_REFUSED = {
    EntryStatus.PROCESSING: "the entry is being sent right now; it can no longer be deleted",
    EntryStatus.PROCESSED: (
        "the record was already sent; once sent it can only be removed in the target system"
    ),
    EntryStatus.ERROR: (
        "the entry failed and stays for review; retry it (errored entries are never dropped)"
    ),
    EntryStatus.EXCLUDED: "the entry was excluded and never sent; there is nothing to delete",
}


def store_guard(fn: Handler) -> Handler:
    """Answer 503 with the store's message when the state store fails."""

    @functools.wraps(fn)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await fn(request)
        except StoreError as exc:
            raise ApiError(503, f"state store unavailable: {exc}") from None

    return wrapped


def flag(request: web.Request, name: str) -> bool:
    """A boolean query flag (true/false/1/0); 400 otherwise."""
    raw = request.query.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise ApiError(400, f"{name}: must be true or false")
    return raw in ("true", "1")


def entry_id(request: web.Request) -> int:
    """The {id} path segment; anything that cannot be an entry id is 404 (no such entry)."""
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or int(raw) < 1:
        raise ApiError(404, f"no queue entry {raw[:40]!r}")
    return int(raw)


def request_flush(app: web.Application) -> str:
    """Ask the engine for a flush now: 'requested', or 'unavailable' without an engine."""
    engine = app.get(ENGINE_KEY)
    if engine is None:
        return "unavailable"
    fut = engine.flusher.request()
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())
    return "requested"


async def retry_ids(app: web.Application, ids: list[int], now: bool) -> dict[str, Any]:
    """Move the given error entries to pending (and maybe flush)."""
    n = await app[CONTROL_KEY].store.retry(ids)
    log.info("queue_retried", selected=len(ids), retried=n, now=now)
    return {"retried": n, "flush": request_flush(app) if now and n else "next"}


async def retry_filter(app: web.Application, query: Mapping[str, str], now: bool) -> dict[str, Any]:
    """Move every error entry matching the list filter to pending (and maybe flush)."""
    filt = entry_filter(query)
    n = await app[CONTROL_KEY].store.retry_matching(filt)
    log.info("queue_retried", filter=sorted(query), retried=n, now=now)
    return {"retried": n, "flush": request_flush(app) if now and n else "next"}


async def delete_entry(app: web.Application, eid: int) -> None:
    """Delete a pending entry; 404 if none, 409 with the reason for any other status."""
    status = await app[CONTROL_KEY].store.delete_pending(eid)
    if status is None:
        raise ApiError(404, f"no queue entry {eid}")
    if status is not EntryStatus.PENDING:
        raise ApiError(409, DELETE_REFUSED[status], entry_status=status.value)
    log.info("queue_entry_deleted", entry=eid)


def register(api: ApiRegistry) -> None:
    """Add the queue routes."""

    @api.route(
        "GET",
        "/api/v1/queue",
        summary="Queue entries, newest first, filtered, with a cursor for the next page",
        responses={200: LIST_SCHEMA, 400: ERROR_SCHEMA, 503: ERROR_SCHEMA},
        params=(*ENTRY_PARAMS, *PAGE_PARAMS),
    )
    @store_guard
    async def list_queue(request: web.Request) -> web.Response:
        filt = entry_filter(request.query)
        before, limit = page_args(request.query)
        store = request.app[CONTROL_KEY].store
        rows = await store.list_entries(filt, before_id=before, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return web.json_response(
            {
                "entries": [entry_row(e) for e in rows],
                "next_cursor": rows[-1].id if more and rows else None,
                "integration_errors": await integration_errors(request.app),
            }
        )

    @api.route(
        "GET",
        "/api/v1/queue/{id}",
        summary="One queue entry: payload, transferred and skipped fields, error and hint",
        responses={200: ENTRY_DETAIL_SCHEMA, 400: ERROR_SCHEMA, 404: ERROR_SCHEMA},
    )
    @store_guard
    async def show(request: web.Request) -> web.Response:
        eid = entry_id(request)
        entry = await request.app[CONTROL_KEY].store.get_entry(eid)
        if entry is None:
            raise ApiError(404, f"no queue entry {eid}")
        return web.json_response(entry_detail(entry))

    @api.route(
        "DELETE",
        "/api/v1/queue/{id}",
        summary="Delete a pending entry (409 with the reason for any other status)",
        responses={
            200: DELETE_SCHEMA,
            400: ERROR_SCHEMA,
            404: ERROR_SCHEMA,
            409: CONFLICT_SCHEMA,
            503: ERROR_SCHEMA,
        },
    )
    @store_guard
    async def delete(request: web.Request) -> web.Response:
        eid = entry_id(request)
        await delete_entry(request.app, eid)
        return web.json_response({"deleted": eid})

    @api.route(
        "POST",
        "/api/v1/queue/{id}/retry",
        summary="Put one error entry back to pending (?now=true flushes right away)",
        responses={
            200: RETRY_SCHEMA,
            400: ERROR_SCHEMA,
            404: ERROR_SCHEMA,
            409: CONFLICT_SCHEMA,
            503: ERROR_SCHEMA,
        },
        params=(NOW_PARAM,),
    )
    @store_guard
    async def retry_one(request: web.Request) -> web.Response:
        eid = entry_id(request)
        now = flag(request, "now")
        store = request.app[CONTROL_KEY].store
        entry = await store.get_entry(eid)
        if entry is None:
            raise ApiError(404, f"no queue entry {eid}")
        if entry.status is not EntryStatus.ERROR:
            raise ApiError(
                409,
                f"only entries in error can be retried; this one is {entry.status.value}",
                entry_status=entry.status.value,
            )
        return web.json_response(await retry_ids(request.app, [eid], now))

    @api.route(
        "POST",
        "/api/v1/queue/retry",
        summary="Retry selected entries (ids in the body) or every error entry of the filter",
        responses={200: RETRY_SCHEMA, 400: ERROR_SCHEMA, 503: ERROR_SCHEMA},
        params=(NOW_PARAM, *ENTRY_PARAMS),
        body=RETRY_BODY,
    )
    @store_guard
    async def retry_many(request: web.Request) -> web.Response:
        now = flag(request, "now")
        query = {k: v for k, v in request.query.items() if k != "now"}
        entry_filter(query)  # validate even when ids are given (the filter is then unused)
        body = await read_json(request)
        if "ids" not in body:
            return web.json_response(await retry_filter(request.app, query, now))
        ids = body["ids"]
        if not isinstance(ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 < i <= MAX_ID for i in ids
        ):
            raise ApiError(400, "ids: must be a list of positive entry ids")
        if len(ids) > 10_000:
            raise ApiError(400, "ids: at most 10000 per request; use the filter for more")
        return web.json_response(await retry_ids(request.app, ids, now))

    @api.route(
        "GET",
        "/api/v1/integration-errors",
        summary="Integration-wide errors: since when, which direction, and what to do",
        responses={200: {"type": "object", "properties": {"errors": INTEGRATION_ERRORS_SCHEMA}}},
    )
    async def list_integration_errors(request: web.Request) -> web.Response:
        return web.json_response({"errors": await integration_errors(request.app)})

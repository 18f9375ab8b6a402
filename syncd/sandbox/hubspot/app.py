"""A faithful local simulator of the HubSpot CRM v3 API (plus v4 associations and lists v3).

`create_hubspot_app` builds the aiohttp app on `make_app`: private-app bearer auth (401
INVALID_AUTHENTICATION / EXPIRED_AUTHENTICATION), HubSpot's rate limits (a ten-second rolling
window, a daily quota, and a separate per-second limit for search) with the
``X-HubSpot-RateLimit-*`` headers on every response, objects, search, batch endpoints,
property definitions, lists and associations. Data lives in `HubSpotSandbox`.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from aiohttp import web

from syncd.sandbox.common import Handler, make_app
from syncd.sandbox.hubspot.batch import add_batch_routes
from syncd.sandbox.hubspot.http import (
    LIST_LIMIT,
    SEARCH_LIMIT,
    SEARCH_MAX_RESULTS,
    ApiError,
    error_body,
    expired_auth_body,
    invalid_auth_body,
    json_body,
    not_found,
    object_type,
    properties_param,
    rate_limit_body,
    sandbox_of,
    validation_message,
)
from syncd.sandbox.hubspot.query import SearchInvalid, compile_search, sort_key
from syncd.sandbox.hubspot.routes import add_other_routes
from syncd.sandbox.hubspot.seed import bulk_load, seed_hubspot
from syncd.sandbox.hubspot.state import HubSpotSandbox, PropertyInvalid

__all__ = ["HubSpotSandbox", "bulk_load", "create_hubspot_app", "seed_hubspot"]

OBJECTS = "/crm/v3/objects/{object}"


def create_hubspot_app(
    sandbox: HubSpotSandbox,
    *,
    token: str,
    rate_limit: tuple[int, float] | None = (100, 10.0),
) -> web.Application:
    """The simulator app; `rate_limit=None` disables the ten-second limit (benchmarks)."""
    app = make_app(sandbox)
    window: deque[float] = deque()
    search_window: deque[float] = deque()
    expected = f"Bearer {token}"

    def limit_headers() -> dict[str, str]:
        out = {
            "X-HubSpot-RateLimit-Daily": str(sandbox.daily_limit),
            "X-HubSpot-RateLimit-Daily-Remaining": str(
                0
                if sandbox.faults.exhaust_quota
                else max(sandbox.daily_limit - sandbox.daily_used, 0)
            ),
        }
        if rate_limit is not None:
            calls, period = rate_limit
            out["X-HubSpot-RateLimit-Max"] = str(calls)
            out["X-HubSpot-RateLimit-Remaining"] = str(max(calls - len(window), 0))
            out["X-HubSpot-RateLimit-Interval-Milliseconds"] = str(int(period * 1000))
        return out

    def answer(status: int, body: Any) -> web.Response:
        return web.json_response(body, status=status, headers=limit_headers())

    @web.middleware
    async def hubspot_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_sandbox/"):
            return await handler(request)
        now = time.monotonic()
        sandbox.request_times.append(time.time())
        auth = request.headers.get("Authorization", "")
        if auth != expected or sandbox.faults.revoke_auth:
            return answer(401, invalid_auth_body(sandbox))
        if sandbox.faults.expire_tokens:
            return answer(401, expired_auth_body(sandbox))
        if sandbox.faults.exhaust_quota or sandbox.daily_used >= sandbox.daily_limit:
            return answer(429, rate_limit_body(sandbox, "DAILY"))
        if rate_limit is not None:
            calls, period = rate_limit
            while window and now - window[0] >= period:
                window.popleft()
            if len(window) >= calls:
                return answer(429, rate_limit_body(sandbox, "TEN_SECONDLY_ROLLING"))
        is_search = request.method == "POST" and request.path.endswith("/search")
        if is_search and sandbox.search_rate_limit is not None:
            s_calls, s_period = sandbox.search_rate_limit
            while search_window and now - search_window[0] >= s_period:
                search_window.popleft()
            if len(search_window) >= s_calls:
                return answer(429, rate_limit_body(sandbox, "SECONDLY"))
            search_window.append(now)
        if rate_limit is not None:
            window.append(now)
        sandbox.daily_used += 1
        try:
            resp = await handler(request)
        except ApiError as exc:
            body = error_body(
                sandbox, exc.message, exc.category, context=exc.context, errors=exc.errors
            )
            return answer(exc.status, body)
        except web.HTTPNotFound:
            return answer(404, error_body(sandbox, "Resource not found", "OBJECT_NOT_FOUND"))
        except web.HTTPMethodNotAllowed:
            return answer(405, error_body(sandbox, "Method not allowed", "VALIDATION_ERROR"))
        resp.headers.update(limit_headers())
        return resp

    app.middlewares.append(hubspot_mw)
    r = app.router
    r.add_post(f"{OBJECTS}/search", search)
    add_batch_routes(app)
    r.add_get(OBJECTS, list_objects)
    r.add_post(OBJECTS, create_object)
    r.add_get(f"{OBJECTS}/{{id}}", get_object)
    r.add_patch(f"{OBJECTS}/{{id}}", patch_object)
    r.add_delete(f"{OBJECTS}/{{id}}", delete_object)
    add_other_routes(app)
    return app


def _int(raw: Any, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ApiError(400, f"{name} must be an integer", "VALIDATION_ERROR") from None


async def search(request: web.Request) -> web.Response:
    """``POST /crm/v3/objects/{object}/search``; at most 10,000 results per query."""
    sb, obj = sandbox_of(request), object_type(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid input JSON", "VALIDATION_ERROR")
    limit = _int(body.get("limit"), "limit", 10)
    after = _int(body.get("after"), "after", 0)
    if limit > SEARCH_LIMIT or limit < 0:
        raise ApiError(
            400,
            f"Invalid limit {limit}: the maximum is {SEARCH_LIMIT}",
            "VALIDATION_ERROR",
        )
    if after >= SEARCH_MAX_RESULTS:
        # (unverified wording) HubSpot answers 400 to any page at or past the 10,000th result.
        raise ApiError(
            400,
            f"Paging beyond {SEARCH_MAX_RESULTS} results is not supported: 'after' was {after}. "
            "Narrow the search (e.g. move a date filter) to read further.",
            "VALIDATION_ERROR",
        )
    defs = sb.properties[obj]
    try:
        pred = compile_search(obj, body, defs)
        key, reverse = sort_key(body, defs)
    except SearchInvalid as exc:
        raise ApiError(400, str(exc), "VALIDATION_ERROR") from None
    # Search reads HubSpot's index, which lags behind writes (index.py); reads by id do not.
    matched = [rec for rec in sb.searchable(obj) if pred(rec)]
    matched.sort(key=key, reverse=reverse)
    end = min(after + limit, len(matched), SEARCH_MAX_RESULTS)
    page = matched[after:end]
    wanted = body.get("properties") or None
    out: dict[str, Any] = {
        "total": len(matched),
        "results": [sb.to_json(obj, rec, wanted) for rec in page],
    }
    if end < len(matched):
        out["paging"] = {"next": {"after": str(end)}}
    return web.json_response(out)


async def list_objects(request: web.Request) -> web.Response:
    """``GET /crm/v3/objects/{object}``: id-ordered pages, ``archived=true`` for deleted ones."""
    sb, obj = sandbox_of(request), object_type(request)
    limit = max(1, min(_int(request.query.get("limit"), "limit", 10), LIST_LIMIT))
    after = _int(request.query.get("after"), "after", 0)
    archived = request.query.get("archived", "false").lower() == "true"
    rows = sorted(
        (r for r in sb.objects[obj].values() if r.archived == archived and int(r.id) > after),
        key=lambda r: int(r.id),
    )
    page = rows[:limit]
    out: dict[str, Any] = {
        "results": [sb.to_json(obj, rec, properties_param(request)) for rec in page]
    }
    if len(rows) > limit:
        nxt = page[-1].id
        link = f"{request.url.with_query({'after': nxt, 'limit': str(limit)})}"
        out["paging"] = {"next": {"after": nxt, "link": link}}
    return web.json_response(out)


async def get_object(request: web.Request) -> web.Response:
    """``GET /crm/v3/objects/{object}/{id}`` (``idProperty`` to look up by email)."""
    sb, obj = sandbox_of(request), object_type(request)
    rid = request.match_info["id"]
    archived = request.query.get("archived", "false").lower() == "true"
    id_prop = request.query.get("idProperty")
    rec = sb.get(obj, rid, archived=True) if archived else sb.lookup(obj, rid, id_prop)
    if rec is None:
        raise not_found(sb, rid)
    return web.json_response(sb.to_json(obj, rec, properties_param(request)))


async def create_object(request: web.Request) -> web.Response:
    """``POST /crm/v3/objects/{object}``: 201 with the record; 409 for an existing email."""
    sb, obj = sandbox_of(request), object_type(request)
    body = await json_body(request)
    props = (body or {}).get("properties") if isinstance(body, dict) else None
    if not isinstance(props, dict):
        raise ApiError(400, "Invalid input JSON: properties is required", "VALIDATION_ERROR")
    if obj == "contacts" and props.get("email"):
        existing = sb.by_email(str(props["email"]))
        if existing is not None:
            raise ApiError(409, f"Contact already exists. Existing ID: {existing.id}", "CONFLICT")
    _check(sb, obj, props)
    rec = sb.create(obj, props, endpoint="create")
    return web.json_response(sb.to_json(obj, rec, list(props)), status=201)


async def patch_object(request: web.Request) -> web.Response:
    """``PATCH /crm/v3/objects/{object}/{id}``."""
    sb, obj = sandbox_of(request), object_type(request)
    rid = request.match_info["id"]
    rec = sb.lookup(obj, rid, request.query.get("idProperty"))
    if rec is None:
        raise not_found(sb, rid)
    body = await json_body(request)
    props = (body or {}).get("properties") if isinstance(body, dict) else None
    if not isinstance(props, dict):
        raise ApiError(400, "Invalid input JSON: properties is required", "VALIDATION_ERROR")
    _check(sb, obj, props)
    sb.update(obj, rec, props, endpoint="update")
    return web.json_response(sb.to_json(obj, rec, list(props)))


async def delete_object(request: web.Request) -> web.Response:
    """``DELETE /crm/v3/objects/{object}/{id}``: archive; 204 even when it was not there."""
    sb, obj = sandbox_of(request), object_type(request)
    sb.archive(obj, request.match_info["id"])
    return web.Response(status=204)


def _check(sb: HubSpotSandbox, obj: str, props: dict[str, Any]) -> None:
    try:
        sb.check_properties(obj, props)
    except PropertyInvalid as exc:
        raise ApiError(
            400,
            validation_message(exc),
            "VALIDATION_ERROR",
            errors=[
                {
                    "message": p["message"],
                    "code": p["error"],
                    "context": {"propertyName": [p["name"]]},
                }
                for p in exc.problems
            ],
        ) from None

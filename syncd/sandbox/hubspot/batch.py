"""The HubSpot simulator's batch endpoints: read, create, update, upsert, archive.

At most 100 inputs a call. A fully successful batch answers 200 ``{status: "COMPLETE",
results, startedAt, completedAt}`` (201 for ``batch/create``, as HubSpot's OpenAPI spec and
the official SDK have it: hubspot-api-client maps only 201 and 207 there and returns None
for a 200); per-record failures answer 207 with ``numErrors`` and
``errors`` (each error's ``context.objectWriteTraceId`` names the input it belongs to). A
contact create whose email already exists fails the whole call with 409 CONFLICT
"Contact already exists. Existing ID: …", as HubSpot does. Result order is not promised.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp import web

from syncd.sandbox.hubspot.http import (
    BATCH_LIMIT,
    ApiError,
    json_body,
    object_type,
    sandbox_of,
    validation_message,
)
from syncd.sandbox.hubspot.objects import HsObject
from syncd.sandbox.hubspot.state import (
    DEFAULT_PROPERTIES,
    OBJECT_TYPE_IDS,
    SINGULAR,
    HubSpotSandbox,
    PropertyInvalid,
    iso_ms,
)


def add_batch_routes(app: web.Application, base: str = "/crm/v3/objects/{object}/batch") -> None:
    """Mount the batch endpoints."""
    app.router.add_post(f"{base}/read", batch_read)
    app.router.add_post(f"{base}/create", batch_create)
    app.router.add_post(f"{base}/update", batch_update)
    app.router.add_post(f"{base}/upsert", batch_upsert)
    app.router.add_post(f"{base}/archive", batch_archive)


async def _inputs(request: web.Request) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise ApiError(400, "Invalid input JSON: inputs is required", "VALIDATION_ERROR")
    inputs = body["inputs"]
    if len(inputs) > BATCH_LIMIT:
        # (unverified) HubSpot's wording for an oversized batch; the status and category hold.
        raise ApiError(
            400,
            f"The maximum number of inputs supported in a batch request is {BATCH_LIMIT}. "
            "Please reduce the number of items and try again",
            "VALIDATION_ERROR",
            context={"maxInputs": [str(BATCH_LIMIT)], "numInputs": [str(len(inputs))]},
        )
    if not all(isinstance(i, dict) for i in inputs):
        raise ApiError(400, "Invalid input JSON: each input must be an object", "VALIDATION_ERROR")
    return body, inputs


def _props(inp: dict[str, Any]) -> dict[str, Any]:
    props = inp.get("properties") or {}
    if not isinstance(props, dict):
        raise ApiError(400, "Invalid input JSON: properties must be an object", "VALIDATION_ERROR")
    return props


def _respond(
    sb: HubSpotSandbox,
    started: int,
    results: list[dict[str, Any]],
    errors: list[dict[str, Any]],
    *,
    ok_status: int = 200,
) -> web.Response:
    body: dict[str, Any] = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": iso_ms(started),
        "completedAt": iso_ms(sb.now_ms()),
    }
    if errors:
        body["numErrors"] = len(errors)
        body["errors"] = errors
        return web.json_response(body, status=207)
    return web.json_response(body, status=ok_status)


def _record_error(
    sb: HubSpotSandbox, inp: dict[str, Any], message: str, category: str, **context: list[str]
) -> dict[str, Any]:
    ctx = dict(context)
    if inp.get("objectWriteTraceId") is not None:
        ctx["objectWriteTraceId"] = [str(inp["objectWriteTraceId"])]
    return {"status": "error", "category": category, "message": message, "context": ctx}


def _invalid(sb: HubSpotSandbox, inp: dict[str, Any], exc: PropertyInvalid) -> dict[str, Any]:
    err = _record_error(sb, inp, validation_message(exc), "VALIDATION_ERROR")
    err["errors"] = [
        {"message": p["message"], "code": p["error"], "context": {"propertyName": [p["name"]]}}
        for p in exc.problems
    ]
    return err


def _result(
    sb: HubSpotSandbox, obj: str, rec: HsObject, inp: dict[str, Any], new: bool | None = None
) -> dict[str, Any]:
    wanted = list(DEFAULT_PROPERTIES[obj]) + [p for p in _props(inp) if p not in ("",)]
    out = sb.to_json(obj, rec, dict.fromkeys(wanted))
    if new is not None:
        out["new"] = new
    if inp.get("objectWriteTraceId") is not None:
        out["objectWriteTraceId"] = str(inp["objectWriteTraceId"])
    return out


def _duplicates(keys: list[str]) -> None:
    counts = Counter(keys)
    dups = sorted(k for k, n in counts.items() if n > 1)
    if dups:
        raise ApiError(
            400, f"Duplicate IDs found in batch input: [{', '.join(dups)}]", "VALIDATION_ERROR"
        )


async def batch_read(request: web.Request) -> web.Response:
    """``POST …/batch/read``: records by id or unique property; missing ones are a 207 error."""
    sb, obj = sandbox_of(request), object_type(request)
    body, inputs = await _inputs(request)
    started = sb.now_ms()
    wanted = body.get("properties") or None
    id_prop = body.get("idProperty")
    archived = bool(body.get("archived", False))
    results, missing = [], []
    for inp in inputs:
        key = str(inp.get("id", ""))
        rec = sb.get(obj, key, archived=True) if archived else sb.lookup(obj, key, id_prop)
        if rec is None:
            missing.append(key)
        else:
            results.append(sb.to_json(obj, rec, wanted))
    errors = []
    if missing:
        errors.append(
            {
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "message": f"Could not get some {SINGULAR[obj].upper()} objects, they may be "
                "deleted or not exist. Check that ids are valid.",
                "context": {"ids": missing},
            }
        )
    return _respond(sb, started, results, errors)


async def batch_create(request: web.Request) -> web.Response:
    """``POST …/batch/create``: new records; an existing contact email fails the call (409)."""
    sb, obj = sandbox_of(request), object_type(request)
    _, inputs = await _inputs(request)
    started = sb.now_ms()
    if obj == "contacts":
        emails = [str(_props(i).get("email") or "").strip().lower() for i in inputs]
        _duplicates([e for e in emails if e])
        for email in emails:
            existing = sb.by_email(email) if email else None
            if existing is not None:
                raise ApiError(
                    409, f"Contact already exists. Existing ID: {existing.id}", "CONFLICT"
                )
    results, errors = [], []
    for inp in inputs:
        props = _props(inp)
        try:
            sb.check_properties(obj, props)
        except PropertyInvalid as exc:
            errors.append(_invalid(sb, inp, exc))
            continue
        rec = sb.create(obj, props, endpoint="batch/create")
        results.append(_result(sb, obj, rec, inp))
    return _respond(sb, started, results, errors, ok_status=201)


async def batch_update(request: web.Request) -> web.Response:
    """``POST …/batch/update``: by record id (or a unique ``idProperty``)."""
    sb, obj = sandbox_of(request), object_type(request)
    _, inputs = await _inputs(request)
    started = sb.now_ms()
    _duplicates([str(i.get("id", "")) for i in inputs])
    results, errors = [], []
    for inp in inputs:
        key = str(inp.get("id", ""))
        rec = sb.lookup(obj, key, inp.get("idProperty"))
        if rec is None:
            errors.append(
                _record_error(
                    sb,
                    inp,
                    f"Could not find {SINGULAR[obj]} with id {key}",
                    "OBJECT_NOT_FOUND",
                    ids=[key],
                )
            )
            continue
        props = _props(inp)
        try:
            sb.check_properties(obj, props)
            _check_email_change(sb, obj, rec, props)
        except PropertyInvalid as exc:
            errors.append(_invalid(sb, inp, exc))
            continue
        except ApiError as exc:
            errors.append(_record_error(sb, inp, exc.message, exc.category, ids=[key]))
            continue
        sb.update(obj, rec, props, endpoint="batch/update")
        results.append(_result(sb, obj, rec, inp))
    return _respond(sb, started, results, errors)


async def batch_upsert(request: web.Request) -> web.Response:
    """``POST …/batch/upsert``: create or update by a unique ``idProperty`` (email for contacts)."""
    sb, obj = sandbox_of(request), object_type(request)
    _, inputs = await _inputs(request)
    started = sb.now_ms()
    for inp in inputs:
        id_prop = str(inp.get("idProperty") or "")
        pdef = sb.properties[obj].get(id_prop)
        if pdef is None or not pdef.unique:
            raise ApiError(
                400,
                f"Unable to perform update/upsert by non-unique {OBJECT_TYPE_IDS[obj]} property",
                "VALIDATION_ERROR",
            )
    _duplicates([str(i.get("id", "")).strip().lower() for i in inputs])
    results, errors = [], []
    for inp in inputs:
        key = str(inp.get("id", "")).strip()
        id_prop = str(inp["idProperty"])
        props = dict(_props(inp))
        rec = sb.lookup(obj, key, id_prop)
        check = dict(props)
        if rec is None and id_prop != "hs_object_id":
            check.setdefault(id_prop, key)
        try:
            sb.check_properties(obj, check)
        except PropertyInvalid as exc:
            errors.append(_invalid(sb, inp, exc))
            continue
        if rec is None:
            if id_prop == "hs_object_id":
                errors.append(
                    _record_error(
                        sb, inp, f"Could not find {SINGULAR[obj]} {key}", "OBJECT_NOT_FOUND"
                    )
                )
                continue
            rec = sb.create(obj, check, endpoint="batch/upsert")
            results.append(_result(sb, obj, rec, inp, new=True))
        else:
            sb.update(obj, rec, props, endpoint="batch/upsert")
            results.append(_result(sb, obj, rec, inp, new=False))
    return _respond(sb, started, results, errors)


async def batch_archive(request: web.Request) -> web.Response:
    """``POST …/batch/archive``: 204, ids that do not exist are ignored."""
    sb, obj = sandbox_of(request), object_type(request)
    _, inputs = await _inputs(request)
    for inp in inputs:
        sb.archive(obj, str(inp.get("id", "")))
    return web.Response(status=204)


def _check_email_change(sb: HubSpotSandbox, obj: str, rec: HsObject, props: dict[str, Any]) -> None:
    if obj != "contacts" or not props.get("email"):
        return
    other = sb.by_email(str(props["email"]))
    if other is not None and other.id != rec.id:
        raise ApiError(409, f"Contact already exists. Existing ID: {other.id}", "CONFLICT")

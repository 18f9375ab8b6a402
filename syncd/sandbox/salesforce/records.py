"""The Salesforce simulator's single-record resources, describe global and versions list.

syncd itself reads with SOQL and writes with sObject Collections (`app`); these are what the
official clients and an operator call besides: ``GET /services/data/`` (versions),
``GET sobjects/`` (describe global), ``GET|POST sobjects/{type}/`` (basic information,
create), ``GET|PATCH|DELETE sobjects/{type}/{id}`` and
``GET|PATCH|DELETE sobjects/{type}/{externalIdField}/{value}`` (upsert), and
``GET sobjects/{type}/updated/``. Errors are JSON arrays like every other resource's.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from aiohttp import web

from syncd.sandbox.salesforce.soql import now_utc, parse_datetime
from syncd.sandbox.salesforce.state import PREFIXES, SalesforceSandbox, format_dt
from syncd.sandbox.salesforce.writes import ApiError, SaveOptions, apply_collection, save_options

DATA = r"/services/data/{ver:v\d+\.0}"
# The versions the org serves. The versions list starts at 31.0, Summer '14 (developer.
# salesforce.com REST API "List Available REST API Versions": 21.0 to 30.0 are retired);
# 66.0 is Spring '26, the release the rest of the simulator follows.
OLDEST_VERSION = 31
LATEST_VERSION = 66
_SEASONS = ("Summer", "Winter", "Spring")
_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
NOT_FOUND = "The requested resource does not exist"


def errors_response(
    status: int, code: str, message: str, extra: dict[str, Any] | None = None
) -> web.Response:
    """A Salesforce error answer: a JSON array of ``{message, errorCode, …}``."""
    return web.json_response(
        [{"message": message, "errorCode": code, **(extra or {})}], status=status
    )


def version_of(request: web.Request) -> str:
    """The request's API version, ``61.0``."""
    return request.match_info["ver"][1:]


def save_options_of(request: web.Request) -> SaveOptions:
    """The request's ``Sforce-Duplicate-Rule-Header``."""
    return save_options(
        request.headers.get("Sforce-Duplicate-Rule-Header", ""), version_of(request)
    )


def object_of_request(sandbox: SalesforceSandbox, request: web.Request) -> str:
    """The canonical name of the object the path names, or 404."""
    raw = request.match_info["type"]
    obj = sandbox.object_name(raw)
    if obj is None:
        raise ApiError(404, "NOT_FOUND", f"{NOT_FOUND}: {raw}")
    return obj


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body, or JSON_PARSER_ERROR."""
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "JSON_PARSER_ERROR", "Unexpected character in request body") from None
    if not isinstance(body, dict):
        raise ApiError(400, "JSON_PARSER_ERROR", "Cannot deserialize request body")
    return body


def version_label(number: int) -> str:
    """The release a version came with: 31 is Summer '14, 32 Winter '15, 33 Spring '15 …"""
    offset = number - 31
    return f"{_SEASONS[offset % 3]} '{14 + (offset + 2) // 3:02d}"


def _object_entry(obj: str, version: str) -> dict[str, Any]:
    """An object as describe global lists it (developer.salesforce.com REST API "Get a List
    of Objects", DescribeGlobalSObjectResult)."""
    base = f"/services/data/v{version}/sobjects/{obj}"
    return {
        "activateable": False,
        "createable": True,
        "custom": False,
        "customSetting": False,
        "deletable": True,
        "deprecatedAndHidden": False,
        "feedEnabled": True,
        "keyPrefix": PREFIXES[obj],
        "label": obj,
        "labelPlural": f"{obj}s" if obj != "Opportunity" else "Opportunities",
        "layoutable": True,
        "mergeable": obj != "Opportunity",
        "mruEnabled": True,
        "name": obj,
        "queryable": True,
        "replicateable": True,
        "retrieveable": True,
        "searchable": True,
        "triggerable": True,
        "undeletable": True,
        "updateable": True,
        "urls": {
            "sobject": base,
            "describe": f"{base}/describe",
            "rowTemplate": f"{base}/{{ID}}",
        },
    }


def _find(sandbox: SalesforceSandbox, obj: str, raw_id: str) -> dict[str, Any]:
    """The record a path names by its 15- or 18-character id. What does not look like an id
    is taken for an external id field name, as Salesforce does ("Provided external ID field
    does not exist or is not accessible: …"); a deleted record is ENTITY_IS_DELETED."""
    if not _ID.match(raw_id):
        raise ApiError(
            404,
            "NOT_FOUND",
            f"Provided external ID field does not exist or is not accessible: {raw_id}",
        )
    records = sandbox.records[obj]
    rec = records.get(raw_id)
    if rec is None and len(raw_id) == 15:
        rec = next((r for rid, r in records.items() if rid[:15] == raw_id), None)
    if rec is None:
        raise ApiError(404, "NOT_FOUND", NOT_FOUND)
    if rec["IsDeleted"]:
        raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted", {"fields": []})
    return rec


def _external_field(sandbox: SalesforceSandbox, obj: str, raw: str) -> str:
    name = sandbox.canonical_field(obj, raw)
    if name is None or not sandbox.schema[obj][name].external_id:
        raise ApiError(
            404,
            "NOT_FOUND",
            f"Provided external ID field does not exist or is not accessible: {raw}",
        )
    return name


def _render(
    sandbox: SalesforceSandbox, request: web.Request, obj: str, rec: dict[str, Any]
) -> web.Response:
    """A record as ``GET sobjects/{type}/{id}`` answers: every field, or ``?fields=``."""
    wanted = request.query.get("fields")
    if wanted:
        fields = []
        for raw in wanted.split(","):
            name = sandbox.canonical_field(obj, raw.strip())
            if name is None:
                raise ApiError(
                    400, "INVALID_FIELD", f"No such column '{raw.strip()}' on entity '{obj}'."
                )
            fields.append(name)
    else:
        fields = list(sandbox.schema[obj])
    return web.json_response(sandbox.to_api(obj, rec, tuple(fields), version_of(request)))


def _save_one(
    sandbox: SalesforceSandbox,
    request: web.Request,
    op: str,
    obj: str,
    record: dict[str, Any],
    *,
    ext_field: str | None = None,
) -> dict[str, Any]:
    """One record through the collections' rules; a refusal is the single-record error
    array, DUPLICATES_DETECTED with its ``duplicateResult`` (the matched records)."""
    [result] = apply_collection(
        sandbox,
        op,
        [record],
        all_or_none=False,
        path_type=obj,
        ext_field=ext_field,
        endpoint=f"{request.method} sobjects/{obj}" + (f"/{ext_field}" if ext_field else ""),
        options=save_options_of(request),
        version=version_of(request),
        terse=False,
    )
    if not result["success"]:
        first = dict(result["errors"][0])
        code, message = first.pop("statusCode"), first.pop("message")
        status = 404 if code in ("ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY") else 400
        raise ApiError(status, code, message, first)
    return result


def add_record_routes(app: web.Application, sandbox: SalesforceSandbox) -> None:
    """Mount the resources of this module; after the fixed ``sobjects/{type}/…`` ones."""

    async def versions(_: web.Request) -> web.Response:
        return web.json_response(
            [
                {"label": version_label(n), "url": f"/services/data/v{n}.0", "version": f"{n}.0"}
                for n in range(OLDEST_VERSION, LATEST_VERSION + 1)
            ]
        )

    async def describe_global(request: web.Request) -> web.Response:
        version = version_of(request)
        return web.json_response(
            {
                "encoding": "UTF-8",
                "maxBatchSize": 200,
                "sobjects": [_object_entry(obj, version) for obj in sandbox.schema],
            }
        )

    async def basic_info(request: web.Request) -> web.Response:
        obj = object_of_request(sandbox, request)
        return web.json_response(
            {"objectDescribe": _object_entry(obj, version_of(request)), "recentItems": []}
        )

    async def create(request: web.Request) -> web.Response:
        """POST sobjects/{type}/: 201 with the new id (REST API "Create a Record")."""
        obj = object_of_request(sandbox, request)
        result = _save_one(sandbox, request, "create", obj, await read_json(request))
        return web.json_response({"id": result["id"], "success": True, "errors": []}, status=201)

    async def get_record(request: web.Request) -> web.Response:
        obj = object_of_request(sandbox, request)
        return _render(sandbox, request, obj, _find(sandbox, obj, request.match_info["id"]))

    async def update_record(request: web.Request) -> web.Response:
        """PATCH sobjects/{type}/{id}: 204, no body (REST API "Update a Record")."""
        obj = object_of_request(sandbox, request)
        rec = _find(sandbox, obj, request.match_info["id"])
        body = await read_json(request)
        fields = {k: v for k, v in body.items() if k.lower() != "id"}
        _save_one(sandbox, request, "update", obj, {**fields, "Id": rec["Id"]})
        return web.Response(status=204)

    async def delete_record(request: web.Request) -> web.Response:
        obj = object_of_request(sandbox, request)
        rec = _find(sandbox, obj, request.match_info["id"])
        sandbox.delete(obj, rec["Id"])
        sandbox.record_write(f"DELETE sobjects/{obj}", obj, rec["Id"], {"IsDeleted": True})
        return web.Response(status=204)

    def by_external_id(request: web.Request) -> tuple[str, str, dict[str, Any]]:
        obj = object_of_request(sandbox, request)
        field = _external_field(sandbox, obj, request.match_info["field"])
        rec = sandbox.find_by_external_id(obj, request.match_info["value"])
        if rec is None:
            raise ApiError(404, "NOT_FOUND", NOT_FOUND)
        return obj, field, rec

    async def get_by_external_id(request: web.Request) -> web.Response:
        obj, _, rec = by_external_id(request)
        return _render(sandbox, request, obj, rec)

    async def delete_by_external_id(request: web.Request) -> web.Response:
        obj, _, rec = by_external_id(request)
        sandbox.delete(obj, rec["Id"])
        sandbox.record_write(f"DELETE sobjects/{obj}", obj, rec["Id"], {"IsDeleted": True})
        return web.Response(status=204)

    async def upsert_by_external_id(request: web.Request) -> web.Response:
        """PATCH sobjects/{type}/{field}/{value}: 201 when it created the record; when it
        updated one, 200 with ``created: false`` from API 46.0 and 204 without a body before
        (developer.salesforce.com REST API "Insert or Update (Upsert) a Record Using an
        External ID"; the 46.0 change: github.com/g8rswimmer/go-sfdc pull 51,
        wadewegner/Force.com-Toolkit-for-NET issue 407)."""
        obj = object_of_request(sandbox, request)
        field = _external_field(sandbox, obj, request.match_info["field"])
        body = await read_json(request)
        fields = {k: v for k, v in body.items() if k.lower() != field.lower()}
        value = request.match_info["value"]
        result = _save_one(
            sandbox, request, "upsert", obj, {**fields, field: value}, ext_field=field
        )
        answer: dict[str, Any] = {"id": result["id"], "success": True, "errors": []}
        modern = float(version_of(request)) >= 46.0
        if modern:
            answer["created"] = result["created"]
        if result["created"]:
            return web.json_response(answer, status=201)
        return web.json_response(answer) if modern else web.Response(status=204)

    async def updated(request: web.Request) -> web.Response:
        """GET sobjects/{type}/updated/?start=&end=: ids of records changed in the window,
        which reaches back 30 days (REST API "Get Updated Records")."""
        obj = object_of_request(sandbox, request)
        try:
            start = parse_datetime(request.query["start"].replace(" ", "+"))
            end = parse_datetime(request.query["end"].replace(" ", "+"))
        except (KeyError, ValueError):
            raise ApiError(
                400, "MALFORMED_QUERY", "start and end must be ISO 8601 dateTime values"
            ) from None
        now = now_utc().replace(second=0)
        if start < now - timedelta(days=30):
            raise ApiError(
                400, "INVALID_REPLICATION_DATE", "startDate cannot be before earliestDateAvailable"
            )
        covered = min(end, now).replace(second=0)
        ids = [
            r["Id"]
            for r in sandbox.records[obj].values()
            if not r["IsDeleted"] and start <= r["SystemModstamp"] < covered
        ]
        return web.json_response({"ids": ids, "latestDateCovered": format_dt(covered)})

    r = app.router
    r.add_get("/services/data", versions)
    r.add_get("/services/data/", versions)
    for slash in ("", "/"):
        r.add_get(DATA + "/sobjects" + slash, describe_global)
        r.add_get(DATA + "/sobjects/{type}" + slash, basic_info)
        r.add_post(DATA + "/sobjects/{type}" + slash, create)
        r.add_get(DATA + "/sobjects/{type}/updated" + slash, updated)
    r.add_get(DATA + "/sobjects/{type}/{id}", get_record)
    r.add_patch(DATA + "/sobjects/{type}/{id}", update_record)
    r.add_delete(DATA + "/sobjects/{type}/{id}", delete_record)
    r.add_get(DATA + "/sobjects/{type}/{field}/{value}", get_by_external_id)
    r.add_patch(DATA + "/sobjects/{type}/{field}/{value}", upsert_by_external_id)
    r.add_delete(DATA + "/sobjects/{type}/{field}/{value}", delete_by_external_id)

"""The simulator's ``/fieldValues``: one custom field value of one contact
(https://developers.activecampaign.com/reference/create-fieldvalue)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from syncd.sandbox.activecampaign.http import (
    BadRequest,
    body_of,
    errors_422,
    int_param,
    meta,
    not_found,
    paging,
    sandbox_of,
)
from syncd.sandbox.activecampaign.state import ActiveCampaignSandbox, Contact, fmt_dt


def add_field_value_routes(app: web.Application, base: str) -> None:
    """Mount ``/fieldValues`` under `base`."""
    r = app.router
    r.add_get(f"{base}/fieldValues", list_field_values)
    r.add_post(f"{base}/fieldValues", create_field_value)
    r.add_get(f"{base}/fieldValues/{{id}}", get_field_value)
    r.add_put(f"{base}/fieldValues/{{id}}", update_field_value)


def _field_value_json(c: Contact, fid: int) -> dict[str, Any]:
    return {
        "contact": str(c.id),
        "field": str(fid),
        "value": c.field_values[fid],
        "cdate": fmt_dt(c.cdate),
        "udate": fmt_dt(c.udate),
        "id": _field_value_id(c.id, fid),
    }


def _field_value_id(cid: int, fid: int) -> str:
    # One id per (contact, field); fields are few, so it fits in the low digits.
    return str(cid * 1000 + fid)


async def list_field_values(request: web.Request) -> web.Response:
    """GET /fieldValues (``filters[fieldid]``, ``filters[val]``), paged like every list."""
    sb = sandbox_of(request)
    limit, offset = paging(request)
    fid_filter = int_param(request, "filters[fieldid]")
    val = request.query.get("filters[val]")
    rows = [
        _field_value_json(c, fid)
        for c in sb.contacts_after(0)
        if not c.deleted
        for fid in sorted(c.field_values)
        if (fid_filter is None or fid == fid_filter) and (val is None or c.field_values[fid] == val)
    ]
    return web.json_response(
        {"fieldValues": rows[offset : offset + limit], "meta": meta(len(rows))}
    )


def _field_value_target(
    sb: ActiveCampaignSandbox, request: web.Request
) -> tuple[Contact, int] | web.Response:
    raw = request.match_info["id"]
    if not raw.isdigit():
        return not_found("FieldValue", raw)
    cid, fid = divmod(int(raw), 1000)
    c = sb.live_contact(cid)
    if c is None or fid not in c.field_values:
        return not_found("FieldValue", raw)
    return c, fid


async def get_field_value(request: web.Request) -> web.Response:
    """GET /fieldValues/{id}."""
    sb = sandbox_of(request)
    found = _field_value_target(sb, request)
    if isinstance(found, web.Response):
        return found
    return web.json_response({"fieldValue": _field_value_json(*found)})


async def _set_field_value(
    sb: ActiveCampaignSandbox, body: dict[str, Any], cid: int | None
) -> web.Response:
    try:
        contact = int(body["contact"]) if cid is None else cid
        fid = int(body["field"])
    except (KeyError, TypeError, ValueError):
        raise BadRequest("fieldValue needs numeric contact and field") from None
    c = sb.live_contact(contact)
    if c is None:
        return errors_422("Contact not found", "related_missing", "/data/attributes/contact")
    if fid not in sb.fields:
        return errors_422("Field not found", "related_missing", "/data/attributes/field")
    value = "" if body.get("value") is None else str(body["value"])
    changed = sb.apply_contact(c, {"_fields": {fid: value}})
    sb.record_write("POST /api/3/fieldValues", "contact", str(c.id), changed, key=c.email.lower())
    return web.json_response({"contacts": [c.to_json()], "fieldValue": _field_value_json(c, fid)})


async def create_field_value(request: web.Request) -> web.Response:
    """POST /fieldValues: set one custom field of a contact
    (https://developers.activecampaign.com/reference/create-fieldvalue)."""
    sb = sandbox_of(request)
    return await _set_field_value(sb, await body_of(request, "fieldValue"), None)


async def update_field_value(request: web.Request) -> web.Response:
    """PUT /fieldValues/{id}."""
    sb = sandbox_of(request)
    found = _field_value_target(sb, request)
    if isinstance(found, web.Response):
        return found
    c, fid = found
    body = await body_of(request, "fieldValue")
    return await _set_field_value(sb, {**body, "field": fid}, c.id)

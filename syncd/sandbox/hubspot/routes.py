"""The HubSpot simulator's other endpoints: properties, lists v3, v4 associations, account.

- ``GET/POST /crm/v3/properties/{object}``, ``GET/PATCH /crm/v3/properties/{object}/{name}``
  (a PATCH with ``options`` replaces the option list, as HubSpot does);
- ``POST /crm/v3/lists``, ``GET /crm/v3/lists/{listId}``,
  ``PUT /crm/v3/lists/{listId}/memberships/add|remove`` (a JSON array of record ids),
  ``GET /crm/v3/lists/{listId}/memberships``;
- ``PUT /crm/v4/objects/contact/{id}/associations/default/company/{id}``,
  ``PUT /crm/v4/objects/contact/{id}/associations/company/{id}`` (labels body),
  ``GET /crm/v4/objects/contact/{id}/associations/company``,
  ``POST /crm/v4/associations/contact/company/batch/read``;
- ``GET /account-info/v3/details`` (the cheap call used to check a token).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from syncd.sandbox.hubspot.http import ApiError, json_body, object_type, sandbox_of
from syncd.sandbox.hubspot.state import PLURAL, HubSpotSandbox, PropertyDef

# HubSpot-defined association types to a company: (with Primary Company, unlabeled), per
# source object (developers.hubspot.com, "Associations v4: association type IDs").
TYPES = {"contacts": (1, 279), "deals": (5, 341)}


def add_other_routes(app: web.Application) -> None:
    """Mount the endpoints this module serves."""
    r = app.router
    r.add_get("/crm/v3/properties/{object}", list_properties)
    r.add_post("/crm/v3/properties/{object}", create_property)
    r.add_get("/crm/v3/properties/{object}/{name}", get_property)
    r.add_patch("/crm/v3/properties/{object}/{name}", patch_property)
    r.add_post("/crm/v3/lists", create_list)
    r.add_post("/crm/v3/lists/", create_list)  # the official SDK posts with the slash
    r.add_get("/crm/v3/lists/{listId}", get_list)
    r.add_put("/crm/v3/lists/{listId}/memberships/add", add_members)
    r.add_put("/crm/v3/lists/{listId}/memberships/remove", remove_members)
    r.add_get("/crm/v3/lists/{listId}/memberships", list_members)
    v4 = "/crm/v4/objects/{from}/{fromId}/associations"
    r.add_put(f"{v4}/default/{{to}}/{{toId}}", associate_default)
    r.add_put(f"{v4}/{{to}}/{{toId}}", associate_labels)
    r.add_delete(f"{v4}/{{to}}/{{toId}}", dissociate)
    r.add_get(f"{v4}/{{to}}", get_associations)
    r.add_post("/crm/v4/associations/{from}/{to}/batch/read", batch_read_associations)
    r.add_get("/account-info/v3/details", account_details)


# ---- properties ----------------------------------------------------------------------
async def list_properties(request: web.Request) -> web.Response:
    """All property definitions of an object."""
    sb, obj = sandbox_of(request), object_type(request)
    return web.json_response({"results": [p.to_json(obj) for p in sb.properties[obj].values()]})


def _property(sb: HubSpotSandbox, obj: str, name: str) -> PropertyDef:
    pdef = sb.properties[obj].get(name)
    if pdef is None:
        raise ApiError(
            404, f"Unable to find property {name} for object type {obj}", "OBJECT_NOT_FOUND"
        )
    return pdef


async def get_property(request: web.Request) -> web.Response:
    """One property definition."""
    sb, obj = sandbox_of(request), object_type(request)
    return web.json_response(_property(sb, obj, request.match_info["name"]).to_json(obj))


def _options(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise ApiError(400, "options must be a list", "VALIDATION_ERROR")
    out = []
    for i, o in enumerate(raw):
        if not isinstance(o, dict) or not o.get("value"):
            raise ApiError(400, "each option needs a label and a value", "VALIDATION_ERROR")
        out.append(
            {
                "label": str(o.get("label") or o["value"]),
                "value": str(o["value"]),
                "displayOrder": int(o.get("displayOrder", i)),
                "hidden": bool(o.get("hidden", False)),
            }
        )
    return out


async def create_property(request: web.Request) -> web.Response:
    """Create a custom property; 409 when the name is taken."""
    sb, obj = sandbox_of(request), object_type(request)
    body = await json_body(request)
    if not isinstance(body, dict) or not body.get("name") or not body.get("type"):
        raise ApiError(400, "name, label, type and fieldType are required", "VALIDATION_ERROR")
    name = str(body["name"])
    if name in sb.properties[obj]:
        raise ApiError(409, f"Property {name} already exists", "CONFLICT")
    pdef = PropertyDef(
        name,
        str(body.get("label") or name),
        str(body["type"]),
        str(body.get("fieldType") or "text"),
        str(body.get("groupName") or "contactinformation"),
        _options(body.get("options", [])),
        unique=bool(body.get("hasUniqueValue", False)),
    )
    sb.properties[obj][name] = pdef
    sb.record_write("properties/create", "properties", f"{obj}.{name}", dict(body), created=True)
    return web.json_response(pdef.to_json(obj), status=201)


async def patch_property(request: web.Request) -> web.Response:
    """Update a property; ``options`` replaces the whole option list."""
    sb, obj = sandbox_of(request), object_type(request)
    pdef = _property(sb, obj, request.match_info["name"])
    body = await json_body(request)
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid input JSON", "VALIDATION_ERROR")
    if "options" in body:
        pdef.options = _options(body["options"])
    if "label" in body:
        pdef.label = str(body["label"])
    sb.record_write("properties/update", "properties", f"{obj}.{pdef.name}", dict(body))
    return web.json_response(pdef.to_json(obj))


# ---- lists ---------------------------------------------------------------------------
async def create_list(request: web.Request) -> web.Response:
    """Create a MANUAL contact list."""
    sb = sandbox_of(request)
    body = await json_body(request)
    if not isinstance(body, dict) or not body.get("name"):
        raise ApiError(400, "name is required", "VALIDATION_ERROR")
    lid = sb.create_list(str(body["name"]))
    return web.json_response({"list": _list_json(sb, lid)})


def _list_json(sb: HubSpotSandbox, lid: str) -> dict[str, Any]:
    lst = sb.lists[lid]
    return {
        "listId": lid,
        "name": lst.name,
        "objectTypeId": "0-1",
        "processingType": "MANUAL",
        "processingStatus": "COMPLETE",
        "size": len(lst.members),
    }


def _list_id(request: web.Request) -> str:
    sb = sandbox_of(request)
    lid = request.match_info["listId"]
    if lid not in sb.lists:
        raise ApiError(404, f"List does not exist with ID {lid}", "OBJECT_NOT_FOUND")
    return lid


async def get_list(request: web.Request) -> web.Response:
    """One list's definition."""
    sb = sandbox_of(request)
    return web.json_response({"list": _list_json(sb, _list_id(request))})


async def _record_ids(request: web.Request) -> list[str]:
    body = await json_body(request)
    if not isinstance(body, list):
        raise ApiError(
            400, "The request body must be a JSON array of record ids", "VALIDATION_ERROR"
        )
    return [str(x) for x in body]


async def add_members(request: web.Request) -> web.Response:
    """Add records to a manual list."""
    sb = sandbox_of(request)
    lid = _list_id(request)
    lst = sb.lists[lid]
    added, missing = [], []
    for rid in await _record_ids(request):
        if sb.get("contacts", rid) is None:
            missing.append(rid)
        elif rid not in lst.members:
            lst.members[rid] = sb.now_ms()
            added.append(rid)
            sb.record_write("lists/memberships/add", "lists", lid, {"recordId": rid}, key=rid)
    # "recordsIdsAdded" (sic): the name in HubSpot's published spec, which its SDKs read
    # (https://rubydoc.info/github/HubSpot/hubspot-api-ruby/Hubspot/Crm/Lists/MembershipsUpdateResponse).
    return web.json_response({"recordsIdsAdded": added, "recordIdsMissing": missing})


async def remove_members(request: web.Request) -> web.Response:
    """Remove records from a manual list."""
    sb = sandbox_of(request)
    lid = _list_id(request)
    lst = sb.lists[lid]
    removed, missing = [], []
    for rid in await _record_ids(request):
        if lst.members.pop(rid, None) is None:
            missing.append(rid)
        else:
            removed.append(rid)
            sb.record_write("lists/memberships/remove", "lists", lid, {"recordId": rid}, key=rid)
    return web.json_response({"recordIdsRemoved": removed, "recordIdsMissing": missing})


async def list_members(request: web.Request) -> web.Response:
    """A list's members in id order, paged by ``after``."""
    sb = sandbox_of(request)
    lid = _list_id(request)
    after = int(request.query.get("after") or 0)
    limit = max(1, min(int(request.query.get("limit") or 100), 250))
    ids = sorted(int(i) for i in sb.lists[lid].members if int(i) > after)
    page = ids[:limit]
    out: dict[str, Any] = {
        "results": [{"recordId": str(i)} for i in page],
        "total": len(sb.lists[lid].members),
    }
    if len(ids) > limit:
        out["paging"] = {"next": {"after": str(page[-1])}}
    return web.json_response(out)


# ---- associations --------------------------------------------------------------------
def _pair(request: web.Request) -> tuple[str, str]:
    src = PLURAL.get(request.match_info["from"].lower(), request.match_info["from"].lower())
    dst = PLURAL.get(request.match_info["to"].lower(), request.match_info["to"].lower())
    if src not in TYPES or dst != "companies":
        raise ApiError(
            400,
            "Only contact and deal to company associations are simulated",
            "VALIDATION_ERROR",
        )
    return src, dst


def _check_ids(sb: HubSpotSandbox, src: str, from_id: str, company_id: str) -> None:
    if sb.get(src, from_id) is None or sb.get("companies", company_id) is None:
        raise ApiError(
            404, "One or more objects in the association do not exist", "OBJECT_NOT_FOUND"
        )


def _assoc_result(contact_id: str, company_id: str, type_id: int) -> dict[str, Any]:
    return {
        "from": {"id": contact_id},
        "to": {"id": company_id},
        "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id},
    }


async def associate_default(request: web.Request) -> web.Response:
    """The default (unlabeled) association; a contact's first company becomes its primary."""
    sb = sandbox_of(request)
    src, _ = _pair(request)
    cid, coid = request.match_info["fromId"], request.match_info["toId"]
    _check_ids(sb, src, cid, coid)
    first = sb.primary_company(cid) is None
    sb.associate(cid, coid, primary=first, types=TYPES[src])
    sb.record_write("associations/default", "associations", cid, {"company": coid}, key=coid)
    return web.json_response(
        {"status": "COMPLETE", "results": [_assoc_result(cid, coid, TYPES[src][1])]}
    )


async def associate_labels(request: web.Request) -> web.Response:
    """Associate with the given types; type 1 (HUBSPOT_DEFINED) makes the company primary."""
    sb = sandbox_of(request)
    src, _ = _pair(request)
    cid, coid = request.match_info["fromId"], request.match_info["toId"]
    _check_ids(sb, src, cid, coid)
    body = await json_body(request)
    if not isinstance(body, list) or not body:
        raise ApiError(400, "The body must be a list of association types", "VALIDATION_ERROR")
    type_ids = {int(t.get("associationTypeId", 0)) for t in body if isinstance(t, dict)}
    primary_type = TYPES[src][0]
    sb.associate(cid, coid, primary=primary_type in type_ids, types=TYPES[src])
    sb.record_write(
        "associations", "associations", cid, {"company": coid, "types": sorted(type_ids)}, key=coid
    )
    labels = [{"category": "HUBSPOT_DEFINED", "typeId": t, "label": None} for t in sorted(type_ids)]
    return web.json_response(
        {
            "fromObjectTypeId": "0-1",
            "fromObjectId": int(cid),
            "toObjectTypeId": "0-2",
            "toObjectId": int(coid),
            "labels": [("Primary" if t == primary_type else None) for t in sorted(type_ids)],
            "associationTypes": labels,
        },
        status=201,  # "LabelsBetweenObjectPair", 201 in HubSpot's spec and SDK
    )


def _targets(sb: HubSpotSandbox, contact_id: str) -> list[dict[str, Any]]:
    out = []
    for (cid, coid), types in sorted(sb.associations.items()):
        if cid != contact_id:
            continue
        out.append(
            {
                "toObjectId": int(coid),
                "associationTypes": [
                    {
                        "category": "HUBSPOT_DEFINED",
                        "typeId": t,
                        "label": "Primary" if t in (1, 5) else None,
                    }
                    for t in sorted(types)
                ],
            }
        )
    return out


async def dissociate(request: web.Request) -> web.Response:
    """Remove every association between the record and the company (204)."""
    sb = sandbox_of(request)
    _pair(request)
    cid, coid = request.match_info["fromId"], request.match_info["toId"]
    if sb.dissociate(cid, coid):
        sb.record_write("associations/delete", "associations", cid, {"company": coid}, key=coid)
    return web.Response(status=204)


async def get_associations(request: web.Request) -> web.Response:
    """A contact's companies with their association types."""
    sb = sandbox_of(request)
    _pair(request)
    return web.json_response({"results": _targets(sb, request.match_info["fromId"])})


async def batch_read_associations(request: web.Request) -> web.Response:
    """Companies of up to 1,000 contacts."""
    sb = sandbox_of(request)
    _pair(request)
    body = await json_body(request)
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list):
        raise ApiError(400, "inputs is required", "VALIDATION_ERROR")
    results = []
    for inp in inputs:
        cid = str(inp.get("id", "")) if isinstance(inp, dict) else ""
        targets = _targets(sb, cid)
        if targets:
            results.append({"from": {"id": cid}, "to": targets})
    return web.json_response({"status": "COMPLETE", "results": results})


async def account_details(request: web.Request) -> web.Response:
    """The portal the token belongs to."""
    sb = sandbox_of(request)
    return web.json_response(
        {
            "portalId": sb.portal_id,
            "accountType": "STANDARD",
            "timeZone": "UTC",
            "companyCurrency": "USD",
            "additionalCurrencies": [],
            "utcOffset": "+00:00",
            "utcOffsetMilliseconds": 0,
            "uiDomain": "app.hubspot.com",
            "dataHostingLocation": "na1",
        }
    )

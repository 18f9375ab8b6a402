"""Simulator routes besides contacts: tags, lists, fields, accounts, deals, campaigns, API v1."""

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
    path_id,
    sandbox_of,
)
from syncd.sandbox.activecampaign.state import (
    ActiveCampaignSandbox,
    fmt_dt,
    parse_dt,
    valid_email,
)


def add_other_routes(app: web.Application, base: str) -> None:
    """Mount the non-contact routes under `base` (and API v1 at /admin/api.php)."""
    r = app.router
    r.add_get(f"{base}/tags", list_tags)
    r.add_post(f"{base}/tags", create_tag)
    r.add_post(f"{base}/contactTags", add_contact_tag)
    r.add_delete(f"{base}/contactTags/{{id}}", delete_contact_tag)
    r.add_get(f"{base}/contacts/{{id}}/contactTags", contact_tags)
    r.add_get(f"{base}/lists", list_lists)
    r.add_post(f"{base}/lists", create_list)
    r.add_get(f"{base}/lists/{{id}}", get_list)
    r.add_post(f"{base}/contactLists", set_contact_list)
    r.add_get(f"{base}/contacts/{{id}}/contactLists", contact_lists)
    r.add_get(f"{base}/fields", list_fields)
    r.add_get(f"{base}/accounts", list_accounts)
    r.add_post(f"{base}/accounts", create_account)
    r.add_get(f"{base}/accounts/{{id}}", get_account)
    r.add_put(f"{base}/accounts/{{id}}", update_account)
    r.add_get(f"{base}/deals", list_deals)
    r.add_post(f"{base}/deals", create_deal)
    r.add_get(f"{base}/deals/{{id}}", get_deal)
    r.add_put(f"{base}/deals/{{id}}", update_deal)
    r.add_get(f"{base}/campaigns", list_campaigns)
    r.add_post("/admin/api.php", api_v1)


def _tag_json(tid: int, t: dict[str, Any]) -> dict[str, Any]:
    return {
        "tagType": t["tagType"],
        "tag": t["tag"],
        "description": t["description"],
        "cdate": fmt_dt(t["cdate"]),
        "id": str(tid),
    }


async def list_tags(request: web.Request) -> web.Response:
    """GET /tags?search= (substring, case-insensitive)."""
    sb = sandbox_of(request)
    limit, offset = paging(request)
    needle = request.query.get("search", "").lower()
    rows = [(i, t) for i, t in sorted(sb.tags.items()) if needle in str(t["tag"]).lower()]
    page = rows[offset : offset + limit]
    return web.json_response({"tags": [_tag_json(i, t) for i, t in page], "meta": meta(len(rows))})


async def create_tag(request: web.Request) -> web.Response:
    """POST /tags."""
    sb = sandbox_of(request)
    body = await body_of(request, "tag")
    name = str(body.get("tag") or "").strip()
    if not name:
        return errors_422("Tag name is required", "field_missing", "/data/attributes/tag")
    if sb.tag_by_name(name) is not None:
        return errors_422("The tag name already exists", "duplicate", "/data/attributes/tag")
    tid = sb.create_tag(
        name, str(body.get("tagType") or "contact"), str(body.get("description") or "")
    )
    sb.record_write("POST /api/3/tags", "tag", str(tid), {"tag": name}, key=name, created=True)
    return web.json_response({"tag": _tag_json(tid, sb.tags[tid])}, status=201)


def _contact_tag_json(ctid: int, cid: int, tid: int, cdate: float) -> dict[str, Any]:
    return {"contact": str(cid), "tag": str(tid), "cdate": fmt_dt(cdate), "id": str(ctid)}


async def add_contact_tag(request: web.Request) -> web.Response:
    """POST /contactTags; tagging twice returns the existing association."""
    sb = sandbox_of(request)
    body = await body_of(request, "contactTag")
    try:
        cid, tid = int(body["contact"]), int(body["tag"])
    except (KeyError, TypeError, ValueError):
        raise BadRequest("contactTag needs numeric contact and tag") from None
    if sb.live_contact(cid) is None:
        return errors_422("Contact not found", "related_missing", "/data/attributes/contact")
    if tid not in sb.tags:
        return errors_422("Tag not found", "related_missing", "/data/attributes/tag")
    ctid, new = sb.add_contact_tag(cid, tid)
    if new:
        sb.record_write(
            "POST /api/3/contactTags",
            "contactTag",
            str(ctid),
            {"contact": cid, "tag": tid},
            key=str(sb.tags[tid]["tag"]),
            created=True,
        )
    row = sb.contact_tags[ctid]
    return web.json_response(
        {"contactTag": _contact_tag_json(ctid, *row)}, status=201 if new else 200
    )


async def delete_contact_tag(request: web.Request) -> web.Response:
    """DELETE /contactTags/{id}."""
    sb = sandbox_of(request)
    ctid = path_id(request)
    row = sb.contact_tags.get(ctid)
    if row is None or not sb.remove_contact_tag(ctid):
        return not_found("ContactTag", ctid)
    sb.record_write(
        "DELETE /api/3/contactTags/{id}",
        "contactTag",
        str(ctid),
        {"contact": row[0], "tag": row[1]},
        key=str(sb.tags[row[1]]["tag"]),
    )
    return web.json_response({})


async def contact_tags(request: web.Request) -> web.Response:
    """GET /contacts/{id}/contactTags."""
    sb = sandbox_of(request)
    cid = path_id(request)
    if sb.live_contact(cid) is None:
        return not_found("Subscriber", cid)
    rows = [
        _contact_tag_json(ctid, *sb.contact_tags[ctid])
        for ctid in sorted(sb.tags_of.get(cid, {}).values())
    ]
    return web.json_response({"contactTags": rows})


def _list_json(lid: int, lst: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in lst.items() if not k.startswith("_")}
    if "_c" in lst:
        out.update(cdate=fmt_dt(lst["_c"]), udate=fmt_dt(lst["_u"]))
    return {**out, "id": str(lid)}


async def list_lists(request: web.Request) -> web.Response:
    """GET /lists (``filters[name]``), paged."""
    sb = sandbox_of(request)
    limit, offset = paging(request)
    name = request.query.get("filters[name]")
    rows = [
        _list_json(i, lst)
        for i, lst in sorted(sb.lists.items())
        if name is None or str(lst.get("name", "")).lower() == name.lower()
    ]
    return web.json_response({"lists": rows[offset : offset + limit], "meta": meta(len(rows))})


async def get_list(request: web.Request) -> web.Response:
    """GET /lists/{id}."""
    sb = sandbox_of(request)
    lid = path_id(request)
    if lid not in sb.lists:
        return not_found("List", lid)
    return web.json_response({"list": _list_json(lid, sb.lists[lid])})


LIST_REQUIRED = ("name", "stringid", "sender_url", "sender_reminder")


async def create_list(request: web.Request) -> web.Response:
    """POST /lists: name, stringid, sender_url and sender_reminder are required
    (https://developers.activecampaign.com/reference/create-new-list)."""
    sb = sandbox_of(request)
    body = await body_of(request, "list")
    for key in LIST_REQUIRED:
        if not str(body.get(key) or "").strip():
            return errors_422(
                f"The list {key} is required", "field_missing", f"/data/attributes/{key}"
            )
    lid = sb.next_id("list")
    now = sb.now()
    sb.lists[lid] = {
        "name": str(body["name"]),
        "stringid": str(body["stringid"]),
        "channel": str(body.get("channel") or "email"),
        "sender_url": str(body["sender_url"]),
        "sender_reminder": str(body["sender_reminder"]),
        "send_last_broadcast": str(int(bool(body.get("send_last_broadcast")))),
        "_c": now,
        "_u": now,
    }
    sb.touch()
    sb.record_write("POST /api/3/lists", "list", str(lid), dict(body), key=str(body["name"]))
    return web.json_response({"list": _list_json(lid, sb.lists[lid])}, status=201)


async def set_contact_list(request: web.Request) -> web.Response:
    """POST /contactLists: set a contact's status on a list exactly as asked (as AC does)."""
    sb = sandbox_of(request)
    body = await body_of(request, "contactList")
    try:
        cid, lid, status = int(body["contact"]), int(body["list"]), int(body["status"])
    except (KeyError, TypeError, ValueError):
        raise BadRequest("contactList needs numeric list, contact and status") from None
    if sb.live_contact(cid) is None:
        return errors_422("Contact not found", "related_missing", "/data/attributes/contact")
    if lid not in sb.lists:
        return errors_422("List not found", "related_missing", "/data/attributes/list")
    if status not in (1, 2):
        return errors_422("Status must be 1 or 2", "invalid", "/data/attributes/status")
    sb.set_membership(cid, lid, status, keep_unsub=False)
    sb.record_write(
        "POST /api/3/contactLists",
        "contactList",
        f"{cid}:{lid}",
        {"contact": cid, "list": lid, "status": status},
        key=str(lid),
    )
    c = sb.contacts[cid]
    return web.json_response(
        {"contacts": [c.to_json()], "contactList": sb.membership_json(cid, lid)}
    )


async def contact_lists(request: web.Request) -> web.Response:
    """GET /contacts/{id}/contactLists."""
    sb = sandbox_of(request)
    cid = path_id(request)
    if sb.live_contact(cid) is None:
        return not_found("Subscriber", cid)
    rows = [sb.membership_json(cid, lid) for (xc, lid) in sorted(sb.memberships) if xc == cid]
    return web.json_response({"contactLists": rows})


async def list_fields(request: web.Request) -> web.Response:
    """GET /fields: custom contact fields."""
    sb = sandbox_of(request)
    limit, offset = paging(request)
    rows = [{"id": str(i), **f} for i, f in sorted(sb.fields.items())]
    return web.json_response({"fields": rows[offset : offset + limit], "meta": meta(len(rows))})


def _stamped(rid: int, row: dict[str, Any], created: str, updated: str) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in ("_c", "_u")}
    out.update({created: fmt_dt(row["_c"]), updated: fmt_dt(row["_u"]), "id": str(rid)})
    return out


def _account_json(rid: int, row: dict[str, Any]) -> dict[str, Any]:
    return _stamped(rid, row, "createdTimestamp", "updatedTimestamp")


def _deal_json(rid: int, row: dict[str, Any]) -> dict[str, Any]:
    return _stamped(rid, row, "cdate", "mdate")


def _list_rows(
    request: web.Request, rows: dict[int, dict[str, Any]], key: str, render: Any, name_key: str
) -> web.Response:
    limit, offset = paging(request)
    needle = request.query.get("search", "").lower()
    upd = request.query.get("filters[updated_after]")
    try:
        since = parse_dt(upd) if upd else None
    except ValueError:
        raise BadRequest("filters: invalid datetime") from None
    id_greater = int_param(request, "id_greater") or 0
    out = [
        (i, r)
        for i, r in sorted(rows.items())
        if i > id_greater
        and needle in str(r.get(name_key, "")).lower()
        and (since is None or r["_u"] >= since)
    ]
    page = out[offset : offset + limit]
    return web.json_response({key: [render(i, r) for i, r in page], "meta": meta(len(out))})


async def list_accounts(request: web.Request) -> web.Response:
    """GET /accounts?search=."""
    sb = sandbox_of(request)
    return _list_rows(request, sb.accounts, "accounts", _account_json, "name")


async def get_account(request: web.Request) -> web.Response:
    """GET /accounts/{id}."""
    sb = sandbox_of(request)
    rid = path_id(request)
    if rid not in sb.accounts:
        return not_found("Account", rid)
    return web.json_response({"account": _account_json(rid, sb.accounts[rid])})


def _account_name_taken(sb: ActiveCampaignSandbox, name: str, rid: int | None) -> bool:
    low = name.lower()
    return any(str(r["name"]).lower() == low and i != rid for i, r in sb.accounts.items())


async def create_account(request: web.Request) -> web.Response:
    """POST /accounts: names are unique."""
    sb = sandbox_of(request)
    body = await body_of(request, "account")
    name = str(body.get("name") or "").strip()
    if not name:
        return errors_422("Account name is required", "field_missing", "/data/attributes/name")
    if _account_name_taken(sb, name, None):
        return errors_422(
            f"The account name {name} already exists", "duplicate", "/data/attributes/name"
        )
    rid = sb.next_id("account")
    now = sb.now()
    sb.accounts[rid] = {
        "name": name,
        "accountUrl": body.get("accountUrl") or "",
        "_c": now,
        "_u": now,
    }
    sb.touch()
    sb.record_write("POST /api/3/accounts", "account", str(rid), dict(body), key=name, created=True)
    return web.json_response({"account": _account_json(rid, sb.accounts[rid])}, status=201)


async def update_account(request: web.Request) -> web.Response:
    """PUT /accounts/{id}."""
    sb = sandbox_of(request)
    rid = path_id(request)
    if rid not in sb.accounts:
        return not_found("Account", rid)
    body = await body_of(request, "account")
    name = body.get("name")
    if name is not None and _account_name_taken(sb, str(name), rid):
        return errors_422(
            f"The account name {name} already exists", "duplicate", "/data/attributes/name"
        )
    row = sb.accounts[rid]
    row.update({k: v for k, v in body.items() if k in ("name", "accountUrl")})
    row["_u"] = sb.now()
    sb.touch()
    sb.record_write("PUT /api/3/accounts/{id}", "account", str(rid), dict(body), key=row["name"])
    return web.json_response({"account": _account_json(rid, row)})


DEAL_KEYS = (
    "title",
    "value",
    "currency",
    "stage",
    "owner",
    "group",
    "contact",
    "account",
    "description",
    "status",
    "percent",
)


async def list_deals(request: web.Request) -> web.Response:
    """GET /deals."""
    sb = sandbox_of(request)
    return _list_rows(request, sb.deals, "deals", _deal_json, "title")


async def get_deal(request: web.Request) -> web.Response:
    """GET /deals/{id}."""
    sb = sandbox_of(request)
    rid = path_id(request)
    if rid not in sb.deals:
        return not_found("Deal", rid)
    return web.json_response({"deal": _deal_json(rid, sb.deals[rid])})


async def create_deal(request: web.Request) -> web.Response:
    """POST /deals: title, value and currency are required."""
    sb = sandbox_of(request)
    body = await body_of(request, "deal")
    for key in ("title", "value", "currency"):
        if body.get(key) in (None, ""):
            return errors_422(
                f"The deal {key} is required", "field_missing", f"/data/attributes/{key}"
            )
    rid = sb.next_id("deal")
    now = sb.now()
    row: dict[str, Any] = {k: str(body[k]) for k in DEAL_KEYS if body.get(k) is not None}
    row.update({"_c": now, "_u": now})
    sb.deals[rid] = row
    sb.touch()
    sb.record_write(
        "POST /api/3/deals", "deal", str(rid), dict(body), key=row["title"], created=True
    )
    return web.json_response({"deal": _deal_json(rid, row)}, status=201)


async def update_deal(request: web.Request) -> web.Response:
    """PUT /deals/{id}."""
    sb = sandbox_of(request)
    rid = path_id(request)
    if rid not in sb.deals:
        return not_found("Deal", rid)
    body = await body_of(request, "deal")
    row = sb.deals[rid]
    row.update({k: str(body[k]) for k in DEAL_KEYS if body.get(k) is not None})
    row["_u"] = sb.now()
    sb.touch()
    sb.record_write("PUT /api/3/deals/{id}", "deal", str(rid), dict(body), key=row.get("title"))
    return web.json_response({"deal": _deal_json(rid, row)})


async def list_campaigns(request: web.Request) -> web.Response:
    """GET /campaigns (newest send first)."""
    sb = sandbox_of(request)
    rows = [
        {"id": str(i), "name": c["name"], "sdate": fmt_dt(c["sdate"]), "list": str(c["list"])}
        for i, c in sorted(sb.campaigns.items(), key=lambda kv: -kv[1]["sdate"])
    ]
    return web.json_response({"campaigns": rows, "meta": meta(len(rows))})


def last_campaign(sb: ActiveCampaignSandbox, lid: int) -> int | None:
    """The most recently sent campaign of a list."""
    best = max(((c["sdate"], i) for i, c in sb.campaigns.items() if c["list"] == lid), default=None)
    return best[1] if best else None


async def api_v1(request: web.Request) -> web.Response:
    """API v1 ``contact_sync`` with ``p[L]``, ``status[L]`` and ``lastmessage[L]``.

    v3 has no way to send a list's last broadcast to a new subscriber; v1 does, and answers
    with ``sendlast_should``/``sendlast_did``.
    """
    sb = sandbox_of(request)
    if request.query.get("api_action") != "contact_sync":
        return web.json_response(
            {"result_code": 0, "result_message": "Unknown api_action", "result_output": "json"}
        )
    form = await request.post()
    email = str(form.get("email") or "").strip()
    if not valid_email(email) or email.lower() in sb.faults.fail_emails:
        return web.json_response(
            {
                "result_code": 0,
                "result_message": "Contact Email Address is not valid.",
                "result_output": "json",
            }
        )
    c = sb.contact_by_email(email)
    created = c is None
    if c is None:
        c = sb.insert_contact(email)
    should = did = 0
    for key, value in form.items():
        if not (key.startswith("p[") and key.endswith("]")):
            continue
        lid = int(str(value))
        if lid not in sb.lists:
            continue
        status = int(str(form.get(f"status[{lid}]", "1")))
        sb.set_membership(c.id, lid, status, keep_unsub=False)
        if status == 1 and str(form.get(f"lastmessage[{lid}]", "0")) == "1":
            should = 1
            camp = last_campaign(sb, lid)
            if camp is not None:
                did = 1
                sb.broadcasts.append((camp, lid, c.id))
                sb.record_write(
                    "POST /admin/api.php?api_action=contact_sync",
                    "broadcast",
                    str(c.id),
                    {"campaign": camp, "list": lid},
                    key=email.lower(),
                )
    return web.json_response(
        {
            "subscriber_id": c.id,
            "sendlast_should": should,
            "sendlast_did": did,
            "result_code": 1,
            "result_message": "Contact added" if created else "Contact updated",
            "result_output": "json",
        }
    )

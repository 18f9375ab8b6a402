"""A faithful local simulator of the ActiveCampaign API v3 (plus the v1 call for last broadcasts).

`create_activecampaign_app` builds the aiohttp app on `make_app`: ``Api-Token`` auth (403 for a
bad key or revoked auth), a server-side rate limit of 5 requests/second per account (429 with
``Retry-After``), contacts, contact/sync, bulk import with asynchronous completion, tags,
lists, custom fields, accounts, deals and campaigns. Data lives in `ActiveCampaignSandbox`.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

from aiohttp import web

from syncd.sandbox.activecampaign.fieldvalues import add_field_value_routes
from syncd.sandbox.activecampaign.http import (
    DUPLICATE_EMAIL_BODY,
    FORBIDDEN_BODY,
    INVALID_EMAIL_BODY,
    RATE_LIMITED_BODY,
    BadRequest,
    body_of,
    int_param,
    meta,
    not_found,
    paging,
    path_id,
    sandbox_of,
)
from syncd.sandbox.activecampaign.importer import process_due_imports
from syncd.sandbox.activecampaign.imports import IMPORT_LIMITS_KEY, bulk_import, import_info
from syncd.sandbox.activecampaign.routes import add_other_routes
from syncd.sandbox.activecampaign.seed import seed_activecampaign
from syncd.sandbox.activecampaign.state import (
    ActiveCampaignSandbox,
    Contact,
    parse_dt,
    valid_email,
)
from syncd.sandbox.common import Handler, make_app

__all__ = ["ActiveCampaignSandbox", "create_activecampaign_app", "seed_activecampaign"]

BASE = "/api/3"


def create_activecampaign_app(
    sandbox: ActiveCampaignSandbox,
    *,
    api_token: str,
    rate_limit: tuple[int, float] | None = (5, 1.0),
    import_limits: bool = True,
) -> web.Application:
    """The simulator app; `rate_limit=None` disables the server-side limit and
    `import_limits=False` the bulk import limits (benchmarks)."""
    app = make_app(sandbox)
    app[IMPORT_LIMITS_KEY] = import_limits
    window: deque[float] = deque()

    @web.middleware
    async def ac_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Auth (403 like AC), then the per-account rate limit (429 + Retry-After)."""
        if request.path.startswith("/_sandbox/"):
            return await handler(request)
        now = time.monotonic()
        process_due_imports(sandbox)
        if request.path.startswith("/admin/api.php"):
            ok = request.query.get("api_key") == api_token
        else:
            ok = request.headers.get("Api-Token") == api_token
        if not ok or sandbox.faults.revoke_auth:
            if request.path.startswith("/admin/api.php"):
                return web.json_response(
                    {"result_code": 0, "result_output": "json", **_v1_denied()}
                )
            return web.json_response(FORBIDDEN_BODY, status=403)
        headers: dict[str, str] = {}
        if rate_limit is not None:
            # https://developers.activecampaign.com/reference/rate-limits: 5 requests a second
            # per account; over it 429 with Retry-After (seconds), and RateLimit-Limit and
            # RateLimit-Remaining headers to pace by.
            calls, period = rate_limit
            while window and now - window[0] >= period:
                window.popleft()
            if len(window) >= calls:
                wait = max(period - (now - window[0]), 0.001)
                return web.json_response(
                    RATE_LIMITED_BODY,
                    status=429,
                    headers={
                        "Retry-After": str(max(1, math.ceil(wait))),
                        "RateLimit-Limit": str(calls),
                        "RateLimit-Remaining": "0",
                    },
                )
            window.append(now)
            left = calls - len(window)
            headers = {"RateLimit-Limit": str(calls), "RateLimit-Remaining": str(left)}
        try:
            resp = await handler(request)
        except BadRequest as exc:
            resp = web.json_response({"message": exc.message}, status=400)
        except web.HTTPException as exc:
            if exc.content_type == "application/json" or exc.status < 400:
                raise
            # The router's own 404/405 in AC's JSON form rather than aiohttp's text
            # (unverified wording: AC answers JSON everywhere under /api/3).
            resp = web.json_response({"message": exc.reason}, status=exc.status)
        resp.headers.update(headers)
        return resp

    @web.middleware
    async def stamp_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Outermost, so injected faults are stamped too: tests check the client's pacing.
        if not request.path.startswith("/_sandbox/"):
            sandbox.request_times.append(time.time())
        return await handler(request)

    app.middlewares.insert(0, stamp_mw)
    app.middlewares.append(ac_mw)
    r = app.router
    r.add_get(f"{BASE}/users/me", users_me)
    r.add_get(f"{BASE}/contacts", list_contacts)
    r.add_post(f"{BASE}/contacts", create_contact)
    r.add_get(f"{BASE}/contacts/{{id}}", get_contact)
    r.add_put(f"{BASE}/contacts/{{id}}", update_contact)
    r.add_delete(f"{BASE}/contacts/{{id}}", delete_contact)
    r.add_post(f"{BASE}/contact/sync", sync_contact)
    r.add_get(f"{BASE}/contacts/{{id}}/fieldValues", contact_field_values)
    r.add_post(f"{BASE}/import/bulk_import", bulk_import)
    r.add_get(f"{BASE}/import/info", import_info)
    add_other_routes(app, BASE)
    add_field_value_routes(app, BASE)
    return app


def _v1_denied() -> dict[str, Any]:
    return {"result_message": "You are not authorized to access this file"}


async def users_me(request: web.Request) -> web.Response:
    """The token's user: the cheap auth check."""
    return web.json_response({"user": {"username": "sandbox", "id": "1"}})


def _field_values(sb: ActiveCampaignSandbox, c: Contact) -> list[dict[str, Any]]:
    return [
        {"contact": str(c.id), "field": str(fid), "value": value, "id": f"{c.id}{fid}"}
        for fid, value in sorted(c.field_values.items())
    ]


def _contact_fields(sb: ActiveCampaignSandbox, body: dict[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {k: body.get(k) for k in ("firstName", "lastName", "phone")}
    fields: dict[int, str] = {}
    for fv in body.get("fieldValues") or []:
        try:
            fid = int(fv["field"])
        except (KeyError, TypeError, ValueError):
            raise BadRequest("fieldValues entries need a numeric 'field'") from None
        if fid in sb.fields:
            fields[fid] = "" if fv.get("value") is None else str(fv["value"])
    attrs["_fields"] = fields
    return attrs


def _email_ok(sb: ActiveCampaignSandbox, email: str) -> bool:
    return valid_email(email) and email.lower() not in sb.faults.fail_emails


async def list_contacts(request: web.Request) -> web.Response:
    """GET /contacts with AC's filters, id paging and a string meta.total."""
    sb = sandbox_of(request)
    q = request.query
    limit, offset = paging(request)
    id_greater = int_param(request, "id_greater") or 0
    tagid = int_param(request, "tagid")
    listid = int_param(request, "listid")
    status = int_param(request, "status")
    deleted = q.get("filters[deleted]") in ("1", "true")
    try:
        upd = parse_dt(q["filters[updated_after]"]) if q.get("filters[updated_after]") else None
        crt = parse_dt(q["filters[created_after]"]) if q.get("filters[created_after]") else None
    except ValueError:
        raise BadRequest("filters: invalid datetime") from None
    ids = {int(x) for k, v in q.items() if k in ("ids[]", "ids") for x in v.split(",") if x}
    email = q.get("email")
    # email_like: a substring of the email; search: of the names, phone or email
    # (https://developers.activecampaign.com/reference/list-all-contacts).
    email_like = (q.get("email_like") or "").strip().lower()
    search = (q.get("search") or "").strip().lower()

    def match(c: Contact) -> bool:
        if c.deleted != deleted:
            return False
        if email_like and email_like not in c.email.lower():
            return False
        if search and not any(
            search in v.lower() for v in (c.email, c.first_name, c.last_name, c.phone)
        ):
            return False
        if upd is not None and c.udate < upd:
            return False
        if crt is not None and c.cdate < crt:
            return False
        if tagid is not None and tagid not in sb.tags_of.get(c.id, {}):
            return False
        if listid is not None:
            row = sb.memberships.get((c.id, listid))
            if row is None or (status is not None and status != -1 and row["status"] != status):
                return False
        return True

    if email is not None:
        cid = sb.by_email.get(email.strip().lower())
        source: list[Contact] = [sb.contacts[cid]] if cid is not None else []
    elif ids:
        source = [sb.contacts[i] for i in sorted(ids) if i in sb.contacts]
    else:
        source = []
    descending = q.get("orders[id]", "ASC").upper() == "DESC"
    if email is not None or ids:
        rows = [c for c in source if c.id > id_greater and match(c)]
        total = len([c for c in source if match(c)])
        if descending:
            rows.reverse()
        page = rows[offset : offset + limit]
    else:
        key = (upd, crt, tagid, listid, status, deleted, email_like, search)
        plain = upd is None and crt is None and not email_like and not search
        if plain and tagid is None and listid is None:
            # Unfiltered: the count is kept as contacts come and go (no scan per request).
            total = len(sb.contacts) - sb.live_count if deleted else sb.live_count
        else:
            total = sb.cached_total(key, lambda: sum(1 for c in sb.contacts_after(0) if match(c)))
        page, skipped = [], 0
        # Walk from the wanted end and stop at the page's last row, as an index scan would.
        walk = sb.contacts_before_end if descending else sb.contacts_after
        for c in walk(id_greater):
            if not match(c):
                continue
            if skipped < offset:
                skipped += 1
                continue
            page.append(c)
            if len(page) >= limit:
                break
    return web.json_response(
        {"scoreValues": [], "contacts": [c.to_json() for c in page], "meta": meta(total)}
    )


async def get_contact(request: web.Request) -> web.Response:
    """GET /contacts/{id} with its tags, lists and field values."""
    sb = sandbox_of(request)
    cid = path_id(request)
    c = sb.live_contact(cid)
    if c is None:
        return not_found("Subscriber", cid)
    tags = [
        {"contact": str(cid), "tag": str(tid), "id": str(ctid)}
        for tid, ctid in sb.tags_of.get(cid, {}).items()
    ]
    lists = [sb.membership_json(cid, lid) for (xc, lid) in sb.memberships if xc == cid]
    return web.json_response(
        {
            "contactTags": tags,
            "contactLists": lists,
            "fieldValues": _field_values(sb, c),
            "contact": c.to_json(),
        }
    )


async def create_contact(request: web.Request) -> web.Response:
    """POST /contacts: create only; an existing email is a 422 duplicate."""
    sb = sandbox_of(request)
    body = await body_of(request, "contact")
    email = str(body.get("email") or "").strip()
    if not _email_ok(sb, email):
        return web.json_response(INVALID_EMAIL_BODY, status=422)
    if sb.contact_by_email(email) is not None:
        from syncd.sandbox.activecampaign.http import DUPLICATE_EMAIL_BODY

        return web.json_response(DUPLICATE_EMAIL_BODY, status=422)
    c = sb.insert_contact(email)
    changed = sb.apply_contact(c, _contact_fields(sb, body))
    sb.record_write(
        "POST /api/3/contacts", "contact", str(c.id), changed, key=email.lower(), created=True
    )
    return web.json_response(
        {"fieldValues": _field_values(sb, c), "contact": c.to_json()}, status=201
    )


async def update_contact(request: web.Request) -> web.Response:
    """PUT /contacts/{id}."""
    sb = sandbox_of(request)
    cid = path_id(request)
    c = sb.live_contact(cid)
    if c is None:
        return not_found("Subscriber", cid)
    body = await body_of(request, "contact")
    attrs = _contact_fields(sb, body)
    if body.get("email") is not None:
        email = str(body["email"]).strip()
        if not _email_ok(sb, email):
            return web.json_response(INVALID_EMAIL_BODY, status=422)
        other = sb.contact_by_email(email)
        if other is not None and other.id != cid:
            return web.json_response(DUPLICATE_EMAIL_BODY, status=422)
        attrs["email"] = email
    changed = sb.apply_contact(c, attrs)
    sb.record_write("PUT /api/3/contacts/{id}", "contact", str(cid), changed, key=c.email.lower())
    return web.json_response({"fieldValues": _field_values(sb, c), "contact": c.to_json()})


async def delete_contact(request: web.Request) -> web.Response:
    """DELETE /contacts/{id}: AC keeps the row flagged deleted."""
    sb = sandbox_of(request)
    cid = path_id(request)
    c = sb.live_contact(cid)
    if c is None:
        return not_found("Subscriber", cid)
    sb.delete_contact(c)
    return web.json_response({})


async def sync_contact(request: web.Request) -> web.Response:
    """POST /contact/sync: create or update by email."""
    sb = sandbox_of(request)
    body = await body_of(request, "contact")
    email = str(body.get("email") or "").strip()
    if not _email_ok(sb, email):
        return web.json_response(INVALID_EMAIL_BODY, status=422)
    c = sb.contact_by_email(email)
    created = c is None
    if c is None:
        c = sb.insert_contact(email)
    changed = sb.apply_contact(c, _contact_fields(sb, body))
    sb.record_write(
        "POST /api/3/contact/sync",
        "contact",
        str(c.id),
        changed,
        key=email.lower(),
        created=created,
    )
    return web.json_response(
        {"fieldValues": _field_values(sb, c), "contact": c.to_json()},
        status=201 if created else 200,
    )


async def contact_field_values(request: web.Request) -> web.Response:
    """GET /contacts/{id}/fieldValues."""
    sb = sandbox_of(request)
    cid = path_id(request)
    c = sb.live_contact(cid)
    if c is None:
        return not_found("Subscriber", cid)
    return web.json_response({"fieldValues": _field_values(sb, c)})

"""The overview web page: login, overview, entry detail, and CSRF-protected actions.

Auth: the admin bearer token in an Authorization header, or a session cookie set by the
login form (``syncd.web.sessions``: stored, so a logout holds on every instance). Forms
posted with a cookie session carry a CSRF token (an HMAC of the session nonce) and must
come from our own origin. Failed sign-ins are throttled (``syncd.web.throttle``).
"""

from __future__ import annotations

import functools
import hmac
import json
import time
from html import escape
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from syncd import metrics
from syncd.errors import StoreError
from syncd.logging import get_logger
from syncd.web.api import CONTROL_KEY, ApiError, Handler
from syncd.web.bodies import read_form
from syncd.web.overview_model import (
    entry_detail,
    entry_filter,
    entry_row,
    integration_errors,
    parse_int,
    present,
)
from syncd.web.page_render import (
    FILTER_KEYS,
    connectors_table,
    entry_page,
    filter_fields,
    filter_hidden,
    health_table,
    login_form,
    page,
    pager,
    paused_notice,
    queue_table,
    runs_table,
    template,
)
from syncd.web.queue_api import delete_entry, retry_filter, retry_ids
from syncd.web.sessions import Session, admin_token, client_address, session_of, sign_in, sign_out
from syncd.web.sync_health import health
from syncd.web.throttle import LoginThrottle

log = get_logger("syncd.web")

PAGE_SIZE = 50
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self';"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
THROTTLE = web.AppKey("login_throttle", LoginThrottle)


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=body, status=status, content_type="text/html", headers=SECURITY_HEADERS
    )


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.host


async def _form_session(request: web.Request) -> tuple[Session, dict[str, str], list[str]]:
    """Authenticate a state-changing POST: session, plus CSRF + origin for cookie sessions."""
    sess = await session_of(request)
    if sess is None:
        raise web.HTTPSeeOther("/login")
    form = await read_form(request)
    fields = {k: str(v) for k, v in form.items()}
    ids = [str(v) for v in form.getall("ids", [])]
    if sess.via == "cookie" and (
        not _same_origin(request)
        or not hmac.compare_digest(fields.get("csrf", "").encode(), sess.csrf.encode())
    ):
        raise _Forbidden()
    return sess, fields, ids


class _Forbidden(Exception):
    """A POST without a valid CSRF token or from another origin."""


def _local(path: str) -> str:
    """Only same-site relative redirects (no open redirect)."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def _redirect(path: str, msg: str, bad: bool = False) -> web.HTTPSeeOther:
    sep = "&" if "?" in path else "?"
    extra = urlencode({"msg": msg, **({"bad": "1"} if bad else {})})
    return web.HTTPSeeOther(f"{_local(path)}{sep}{extra}")


async def login_get(request: web.Request) -> web.Response:
    """The login form (or straight to the overview when already signed in)."""
    if await session_of(request) is not None:
        raise web.HTTPSeeOther("/")
    return _html(page("Sign in", login_form(), signed_in=False))


def _throttle(request: web.Request) -> LoginThrottle:
    """The app's throttle, with the limits in force (a reload may change them)."""
    d = request.app[CONTROL_KEY].settings.daemon
    t = request.app[THROTTLE]
    t.per_address, t.total, t.window = (
        d.login_failures_per_address,
        d.login_failures_total,
        d.login_window,
    )
    return t


async def login_post(request: web.Request) -> web.Response:
    """Check the token; on success start a session and go to the overview.

    Throttled before the token is even read: a client over its failures gets 429 with
    Retry-After, whatever it sends.
    """
    throttle, address, now = _throttle(request), client_address(request), time.monotonic()
    wait = throttle.retry_after(address, now)
    if wait is not None:
        body = login_form(f"Too many failed sign-ins. Try again in {wait} s.")
        metrics.PAGE_LOGINS.labels("throttled").inc()
        resp = _html(page("Sign in", body, signed_in=False), 429)
        resp.headers["Retry-After"] = str(wait)
        return resp
    token = admin_token(request)
    form = await read_form(request)
    given = str(form.get("token", "")).strip()
    if not _same_origin(request):
        return _html(page("Sign in", login_form("Request refused."), signed_in=False), 403)
    if token is None or not hmac.compare_digest(given.encode(), token.encode()):
        if token is not None:
            metrics.PAGE_LOGINS.labels("wrong").inc()
            throttle.failed(address, now)
            log.warning("login_failed", client=address)
        body = login_form("Wrong token." if token else "Set daemon.admin_token first.")
        return _html(page("Sign in", body, signed_in=False), 401)
    throttle.succeeded(address)
    metrics.PAGE_LOGINS.labels("ok").inc()
    resp = web.HTTPSeeOther("/")
    await sign_in(request, resp, token)
    raise resp


async def logout(request: web.Request) -> web.Response:
    """End the session everywhere (it is in the store) and clear the cookie."""
    sess, _, _ = await _form_session(request)
    resp = web.HTTPSeeOther("/login")
    await sign_out(request, sess, resp)
    raise resp


def _flash(request: web.Request) -> tuple[str, bool]:
    return request.query.get("msg", "")[:300], request.query.get("bad") == "1"


async def overview(request: web.Request) -> web.Response:
    """Errors banner, health summary, and the filtered queue."""
    sess = await session_of(request)
    if sess is None:
        raise web.HTTPSeeOther("/login")
    query = {k: request.query.get(k, "") for k in (*FILTER_KEYS, "before")}
    errors = await integration_errors(request.app)
    msg, bad = _flash(request)
    try:
        filt = entry_filter(present(query))
        before = parse_int("before", query["before"] or None, low=1)
        rows = await request.app[CONTROL_KEY].store.list_entries(
            filt, before_id=before, limit=PAGE_SIZE + 1
        )
        h = await health(request)
    except ApiError as exc:
        msg, bad = f"Filter not applied: {exc.text}", True
        return _html(page("Overview", "", errors=errors, flash=msg, flash_bad=bad), 400)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    body = template("overview.html").substitute(
        health=paused_notice(h["directions"]) + health_table(h),
        connectors=connectors_table(h["connectors"]),
        runs=runs_table(h["latest_runs"]),
        filters=filter_fields(query),
        csrf=sess.csrf,
        filter_hidden=filter_hidden(query),
        table=queue_table([entry_row(r) for r in rows], query),
        pager=pager(query, rows[-1].id if more and rows else None),
    )
    return _html(page("Overview", body, csrf=sess.csrf, errors=errors, flash=msg, flash_bad=bad))


def _entry_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound()
    return int(raw)


async def entry(request: web.Request) -> web.Response:
    """One entry: payload, transferred and skipped fields, error, hint, actions."""
    sess = await session_of(request)
    if sess is None:
        raise web.HTTPSeeOther("/login")
    eid = _entry_id(request)
    found = await request.app[CONTROL_KEY].store.get_entry(eid)
    errors = await integration_errors(request.app)
    msg, bad = _flash(request)
    if found is None:
        body = f"<h1>Queue entry {eid}</h1><p>No such entry (it may have been deleted).</p>"
        return _html(page("Not found", body, csrf=sess.csrf, errors=errors), 404)
    back_q = urlencode({k: v for k, v in request.query.items() if k in (*FILTER_KEYS, "before")})
    back = "/" + (f"?{back_q}" if back_q else "")
    body = entry_page(entry_detail(found), sess.csrf, back)
    return _html(
        page(f"Entry {eid}", body, csrf=sess.csrf, errors=errors, flash=msg, flash_bad=bad)
    )


async def entry_retry(request: web.Request) -> web.Response:
    """Retry one error entry (and flush now)."""
    await _form_session(request)
    eid = _entry_id(request)
    out = await retry_ids(request.app, [eid], now=True)
    back = f"/entry/{eid}"
    if not out["retried"]:
        raise _redirect(back, f"Entry {eid} is not in error; nothing to retry.", bad=True)
    raise _redirect(back, f"Entry {eid} is pending again; flush {out['flush']}.")


async def entry_delete(request: web.Request) -> web.Response:
    """Delete one pending entry; explain why not otherwise."""
    _, form, _ = await _form_session(request)
    eid = _entry_id(request)
    try:
        await delete_entry(request.app, eid)
    except ApiError as exc:
        reason = json.loads(exc.text or "{}").get("error", "refused")
        raise _redirect(f"/entry/{eid}", f"Not deleted: {reason}", bad=True) from None
    raise _redirect(_local(form.get("back", "/")), f"Entry {eid} deleted from the buffer.")


async def bulk_retry(request: web.Request) -> web.Response:
    """Retry the selected entries, or every error entry matching the list's filter."""
    _, form, ids = await _form_session(request)
    query = {k: form[f"f_{k}"] for k in FILTER_KEYS if form.get(f"f_{k}")}
    back = "/" + (f"?{urlencode(query)}" if query else "")
    if form.get("scope") == "filter":
        try:
            out = await retry_filter(request.app, query, now=True)
        except ApiError:
            raise _redirect(back, "The filter is not valid.", bad=True) from None
    else:
        chosen = [int(i) for i in ids if i.isascii() and i.isdigit() and len(i) <= 18]
        if not chosen:
            raise _redirect(back, "Select at least one entry in error.", bad=True)
        out = await retry_ids(request.app, chosen, now=True)
    raise _redirect(back, f"{out['retried']} entries back to pending; flush {out['flush']}.")


def page_errors(handler: Handler) -> Handler:
    """Page failures as HTML: a failed CSRF/origin check is 403, an unreachable store 503.

    A wrapper of each page route rather than a middleware: a middleware is one more
    coroutine layer on every request, webhooks included, and only pages need this.
    """

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except _Forbidden:
            body = "<h1>Request refused</h1><p>The form was stale or came from another site."
            body += ' <a href="/">Reload the overview</a> and try again.</p>'
            return _html(page("Refused", body, signed_in=False), 403)
        except StoreError as exc:
            errors = await integration_errors(request.app)
            body = f"<h1>State store unavailable</h1><p>{escape(str(exc))}</p>"
            return _html(page("Unavailable", body, errors=errors), 503)

    return guarded


def install(app: web.Application, api: object = None) -> None:
    """Add the page routes (with their HTML error answers) and the static files."""
    app[THROTTLE] = LoginThrottle(per_address=5, total=20, window=300.0)
    app.router.add_get("/", page_errors(overview))
    app.router.add_get("/login", page_errors(login_get))
    app.router.add_post("/login", page_errors(login_post))
    app.router.add_post("/logout", page_errors(logout))
    app.router.add_get("/entry/{id}", page_errors(entry))
    app.router.add_post("/entry/{id}/retry", page_errors(entry_retry))
    app.router.add_post("/entry/{id}/delete", page_errors(entry_delete))
    app.router.add_post("/queue/retry", page_errors(bulk_retry))
    app.router.add_static("/static/", Path(__file__).parent / "static", name="static")

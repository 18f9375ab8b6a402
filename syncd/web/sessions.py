"""Who is looking at the page: the bearer header, or a session cookie the store vouches for.

The cookie is ``issued.nonce.HMAC(token, issued|nonce)``: rotating ``daemon.admin_token``
signs everyone out. It is valid only while the store holds the SHA-256 of its nonce and
that row has not expired, so a logout (the row deleted) holds on every instance sharing the
store; the store never sees a cookie it could replay (the HMAC needs the admin token).

The cookie is ``Secure`` when the request came over TLS: on the daemon's own socket, or as
``X-Forwarded-Proto: https`` from a proxy listed in ``daemon.trusted_proxies`` (from anyone
else the header is ignored, or any client could claim it).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp import web

from syncd.web.api import CONTROL_KEY, ApiError, check_bearer

COOKIE = "syncd_session"
SESSION_SECONDS = 12 * 3600


@dataclass(frozen=True)
class Session:
    """Who is looking: via a bearer header (no CSRF needed) or a cookie (CSRF token)."""

    via: str
    csrf: str = ""
    key: str = ""  # the stored hash of a cookie session's nonce


def admin_token(request: web.Request) -> str | None:
    """The admin token in force, or None when the page is disabled."""
    tok = request.app[CONTROL_KEY].settings.daemon.admin_token
    return tok.get_secret_value() if tok is not None else None


def _sign(token: str, text: str) -> str:
    return hmac.new(token.encode(), text.encode(), hashlib.sha256).hexdigest()


def _key(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


def new_session_cookie(token: str, now: float | None = None) -> str:
    """A fresh cookie value: issued time, random nonce, and their HMAC under the token."""
    issued = str(int(now if now is not None else time.time()))
    nonce = secrets.token_urlsafe(18)
    return f"{issued}.{nonce}.{_sign(token, f'session|{issued}|{nonce}')}"


def _verified(token: str, raw: str) -> str | None:
    """The nonce of a well-formed, untampered, unexpired cookie value; None otherwise."""
    parts = raw.split(".")
    if len(parts) != 3 or not parts[0].isascii() or not parts[0].isdigit() or len(parts[0]) > 12:
        return None
    issued, nonce, sig = parts
    if not hmac.compare_digest(sig.encode(), _sign(token, f"session|{issued}|{nonce}").encode()):
        return None
    if not 0 <= time.time() - int(issued) <= SESSION_SECONDS:
        return None
    return nonce


async def session_of(request: web.Request) -> Session | None:
    """The request's session, or None when it is not signed in (StoreError: store down)."""
    token = admin_token(request)
    if token is None:
        return None
    if request.headers.get("Authorization"):
        try:
            check_bearer(request, request.app[CONTROL_KEY])
        except ApiError:
            return None
        return Session("bearer")
    nonce = _verified(token, request.cookies.get(COOKIE, ""))
    if nonce is None:
        return None
    key = _key(nonce)
    if not await request.app[CONTROL_KEY].store.session_valid(key):
        return None  # signed out (here or on another instance), or expired
    return Session("cookie", csrf=_sign(token, f"csrf|{nonce}")[:40], key=key)


async def sign_in(request: web.Request, resp: web.StreamResponse, token: str) -> None:
    """Start a stored session and set its cookie on `resp`."""
    cookie = new_session_cookie(token)
    nonce = cookie.split(".")[1]
    expires = datetime.now(UTC) + timedelta(seconds=SESSION_SECONDS)
    await request.app[CONTROL_KEY].store.start_session(_key(nonce), expires)
    resp.set_cookie(
        COOKIE,
        cookie,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="Strict",
        secure=came_over_tls(request),
        path="/",
    )


async def sign_out(request: web.Request, sess: Session, resp: web.StreamResponse) -> None:
    """End the session in the store (for every instance) and clear the cookie."""
    if sess.key:
        await request.app[CONTROL_KEY].store.end_session(sess.key)
    resp.del_cookie(COOKIE, path="/")


def _trusted(request: web.Request, address: str | None) -> bool:
    proxies = request.app[CONTROL_KEY].settings.daemon.trusted_proxies
    if not proxies or not address:
        return False
    try:
        addr = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(p, strict=False) for p in proxies)


def came_over_tls(request: web.Request) -> bool:
    """TLS on our socket, or a trusted proxy's ``X-Forwarded-Proto: https``."""
    if request.secure:
        return True
    if not _trusted(request, request.remote):
        return False
    # A proxy chain appends: the last value is what the proxy next to us saw.
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
    return proto == "https"


def client_address(request: web.Request) -> str:
    """Who is asking: the peer or, behind trusted proxies, the last address in
    X-Forwarded-For that is not one of them (earlier ones are the client's to invent)."""
    peer = request.remote or "unknown"
    if not _trusted(request, peer):
        return peer
    for hop in reversed(request.headers.get("X-Forwarded-For", "").split(",")):
        if not _trusted(request, hop):
            try:
                return str(ipaddress.ip_address(hop.strip()))
            except ValueError:
                return peer
    return peer

"""Webhook intake: ActiveCampaign (form-encoded, token in the URL) and HubSpot (signed JSON).

A 2xx is answered only after the change is committed to the store; a store failure or a
daemon shutting down answers 503 so the sender retries; malformed input answers 400.
"""

from __future__ import annotations

import functools
import hmac
import json
import urllib.parse
from typing import Any

from aiohttp import hdrs, web

from syncd.emails import normalize_email
from syncd.errors import StoreError
from syncd.model import Change, Direction, ObjectType
from syncd.sync.component import SyncEngine
from syncd.sync.eligibility import CONTACT_TAGS, LEAD_TAGS, parse_tags
from syncd.sync.inbound import HINT_KEY
from syncd.vendors.hubspot.signature import check_signature_v3
from syncd.web.api import CONTROL_KEY, ApiError, ApiRegistry
from syncd.web.components import accepting_engine

AC_EVENTS = frozenset(
    {"update", "subscribe", "unsubscribe", "contact_tag_added", "contact_tag_removed"}
)
AC_STANDARD = {
    "email": "email",
    "first_name": "firstName",
    "last_name": "lastName",
    "phone": "phone",
}
_FORM_TYPE = "application/x-www-form-urlencoded"
_ACCEPTED_ONE = json.dumps({"accepted": 1}).encode()  # the answer to nearly every webhook
HUBSPOT_EVENTS = frozenset({"contact.creation", "contact.propertyChange", "contact.deletion"})


def _engine(request: web.Request) -> SyncEngine:
    return accepting_engine(request.app)


def _object_for(tags: frozenset[str]) -> ObjectType:
    if tags & LEAD_TAGS and not tags & CONTACT_TAGS:
        return ObjectType.LEAD
    return ObjectType.CONTACT


def _ascii_escapes() -> dict[str, str]:
    # "%xx" of an ASCII byte in any letter case -> its character (UTF-8 of ASCII is itself).
    out: dict[str, str] = {}
    for b in range(128):
        pair = f"{b:02x}"
        hi, lo = pair[0], pair[1]
        for h in {hi, hi.upper()}:
            for lo_ in {lo, lo.upper()}:
                out[h + lo_] = chr(b)
    return out


_ASCII_ESCAPES = _ascii_escapes()


def _unquote(text: str) -> str:
    """``unquote(text.replace("+", " "), errors="strict")``, quicker for ASCII escapes.

    Webhook bodies escape only ASCII punctuation (``%40``, ``%3A``, ``%2B``); those are
    looked up here, and anything else (a multi-byte UTF-8 escape, a broken one) goes to the
    standard library, which decodes or refuses it.
    """
    if "+" in text:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    head, *parts = text.split("%")
    out = [head]
    for part in parts:
        ch = _ASCII_ESCAPES.get(part[:2])
        if ch is None:
            return urllib.parse.unquote(text, errors="strict")
        out.append(ch)
        out.append(part[2:])
    return "".join(out)


@functools.lru_cache(maxsize=512)
def _form_key(raw: str) -> str:
    # Keys repeat from one webhook to the next ("contact%5Bemail%5D"): decode each once.
    return _unquote(raw)


def parse_form(text: str) -> dict[str, str]:
    """``application/x-www-form-urlencoded`` text as a dict (the last value of a key wins).

    What ``parse_qsl(keep_blank_values=True, errors="strict")`` returns, without its cost:
    most of a webhook body is plain text or ASCII escapes, and this runs on every request.
    Bad %-escapes of UTF-8 raise UnicodeDecodeError.
    """
    out: dict[str, str] = {}
    for part in text.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        if "%" in key or "+" in key:
            key = _form_key(key)
        if "%" in value or "+" in value:
            value = _unquote(value)
        out[key] = value
    return out


_AC_STANDARD_KEYS = tuple((f"contact[{key}]", name) for key, name in AC_STANDARD.items())
_AC_FIELD = "contact[fields]["


def parse_activecampaign(form: dict[str, str]) -> Change:
    """One ActiveCampaign webhook as a Change; ValueError naming the bad key otherwise."""
    event = form.get("type", "")
    if event not in AC_EVENTS:
        raise ValueError(f"type: unsupported event {event!r}")
    cid = form.get("contact[id]", "").strip()
    if not cid.isdigit():
        raise ValueError("contact[id]: required, a numeric contact id")
    fields: dict[str, Any] = {}
    for key, name in _AC_STANDARD_KEYS:
        if key in form:
            fields[name] = form[key]
    for key, value in form.items():
        if key.startswith(_AC_FIELD) and key.endswith("]"):
            fields[f"field:{key[len(_AC_FIELD) : -1]}"] = value
    raw_tags = form.get("contact[tags]")
    if raw_tags is not None:
        tags = parse_tags(raw_tags)
        fields["tags"] = sorted(tags)
    else:
        # Tag events without the full list: re-read the contact before sending it.
        tags = frozenset()
        fields[HINT_KEY] = True
    email = normalize_email(fields.get("email"))
    first, last = fields.get("firstName"), fields.get("lastName")
    full_name = f"{first} {last}" if first and last else (first or last or None)
    return Change(
        direction=Direction.INBOUND,
        object=_object_for(tags),
        record_key=cid,
        source="webhook",
        fields=fields,
        email=email,
        name=full_name,
        event=event,
    )


def parse_hubspot(body: Any) -> list[Change]:
    """HubSpot webhook events as hint-only Changes (the flush re-reads each contact)."""
    if not isinstance(body, list) or not body:
        raise ValueError("body: must be a non-empty JSON array of events")
    changes: list[Change] = []
    for i, ev in enumerate(body):
        if not isinstance(ev, dict):
            raise ValueError(f"[{i}]: must be an object")
        kind = ev.get("subscriptionType")
        if kind not in HUBSPOT_EVENTS:
            raise ValueError(f"[{i}].subscriptionType: unsupported {kind!r}")
        oid = ev.get("objectId")
        if isinstance(oid, bool) or not isinstance(oid, int | str) or not str(oid).isdigit():
            raise ValueError(f"[{i}].objectId: required, a numeric id")
        fields: dict[str, Any] = {HINT_KEY: True}
        prop = ev.get("propertyName")
        if isinstance(prop, str) and prop:
            fields[prop] = ev.get("propertyValue")
        changes.append(
            Change(
                direction=Direction.INBOUND,
                object=ObjectType.CONTACT,
                record_key=str(oid),
                source="webhook",
                fields=fields,
                email=normalize_email(fields.get("email")),
                event=str(kind),
            )
        )
    return changes


async def _submit(engine: SyncEngine, changes: list[Change]) -> web.Response:
    try:
        await engine.intake.submit(changes)
    except StoreError:
        raise ApiError(503, "could not store the change; retry later") from None
    if len(changes) == 1:
        return web.Response(body=_ACCEPTED_ONE, content_type="application/json")
    return web.json_response({"accepted": len(changes)})


async def activecampaign(request: web.Request) -> web.Response:
    """POST /webhooks/activecampaign/{token}."""
    control = request.app[CONTROL_KEY]
    hub = control.settings.hub
    expected = hub.webhook_token if hub is not None and hub.kind == "activecampaign" else None
    given = request.match_info["token"].encode()
    if expected is None or not hmac.compare_digest(given, expected.get_secret_value().encode()):
        raise ApiError(404, "not found")
    engine = _engine(request)
    # Checked before reading: a multipart or oddly-charset body must not reach a parser
    # that fails with something other than ValueError (a 500). The header as senders write
    # it needs no parsing (no parameters, so no charset).
    if request.headers.get(hdrs.CONTENT_TYPE) != _FORM_TYPE:
        if request.content_type != _FORM_TYPE:
            raise ApiError(400, f"body must be form-encoded ({_FORM_TYPE})")
        if (request.charset or "utf-8").lower() not in ("utf-8", "utf8", "us-ascii"):
            raise ApiError(400, "body must be UTF-8 form-encoded data")
    _check_length(request)
    raw = await request.read()
    try:
        # Strict UTF-8, escapes included: a wrongly encoded name is refused, not mangled.
        text = raw.decode("utf-8")
        form = parse_form(text)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "body must be UTF-8 form-encoded data") from None
    try:
        change = parse_activecampaign(form)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return await _submit(engine, [change])


def _check_length(request: web.Request) -> None:
    """413 at once for a declared length over the limit (don't wait for a body to come)."""
    limit = request.app[CONTROL_KEY].settings.daemon.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"body larger than {limit} bytes (daemon.max_body_bytes)")


async def hubspot(request: web.Request) -> web.Response:
    """POST /webhooks/hubspot (v3 signature, at most 5 minutes old)."""
    control = request.app[CONTROL_KEY]
    hub = control.settings.hub
    if hub is None or hub.kind != "hubspot" or hub.webhook_secret is None:
        raise ApiError(404, "not found")
    _check_length(request)
    raw = await request.read()
    # HubSpot signs the URL it called; behind a proxy that is daemon.public_url + the path.
    public = control.settings.daemon.public_url
    uri = public.rstrip("/") + request.path_qs if public else str(request.url)
    check = check_signature_v3(
        hub.webhook_secret.get_secret_value(),
        request.method,
        uri,
        raw,
        request.headers.get("X-HubSpot-Signature-v3"),
        request.headers.get("X-HubSpot-Request-Timestamp"),
    )
    if not check.ok:
        raise ApiError(401, f"rejected: {check.reason}")
    engine = _engine(request)
    try:
        changes = parse_hubspot(json.loads(raw))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return await _submit(engine, changes)


def install(app: web.Application, api: ApiRegistry) -> None:
    """Add the webhook routes."""
    app.router.add_post("/webhooks/activecampaign/{token}", activecampaign)
    app.router.add_post("/webhooks/hubspot", hubspot)

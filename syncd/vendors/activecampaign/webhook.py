"""ActiveCampaign webhooks: the form-encoded body, and the contact change it reports.

AC posts ``application/x-www-form-urlencoded`` bodies (``contact[email]=…``); these parsers
turn one into a Change, and raise ValueError naming the bad key otherwise, so the HTTP side
can answer 400 without knowing AC's format.
"""

from __future__ import annotations

import functools
import urllib.parse
from typing import Any

from syncd.emails import normalize_email
from syncd.model import (
    CONTACT_TAGS,
    HINT_KEY,
    LEAD_TAGS,
    Change,
    Direction,
    ObjectType,
    is_numeric_id,
    parse_tags,
)

AC_EVENTS = frozenset(
    {"update", "subscribe", "unsubscribe", "contact_tag_added", "contact_tag_removed"}
)
AC_STANDARD = {
    "email": "email",
    "first_name": "firstName",
    "last_name": "lastName",
    "phone": "phone",
}


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
    if not is_numeric_id(cid):
        raise ValueError("contact[id]: required, a numeric contact id (1 to 18 digits 0-9)")
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

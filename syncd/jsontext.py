"""JSON text: compact encoders for values encoded once per record (hashes, stored payloads),
and the bounded parse of untrusted input.

`json.JSONEncoder.encode` builds a new C encoder on every call and checks for circular
references; for small dicts that set-up costs about as much as the encoding itself. The
encoders here build the C encoder once and reuse it: the same text as
``json.JSONEncoder(separators=(",", ":"), …).encode``, for values that are never circular.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _std
from typing import Any


def compact_encoder(
    *, sort_keys: bool = False, ensure_ascii: bool = True, default: Callable[[Any], Any] | None
) -> Callable[[Any], str]:
    """A function that encodes a (non-circular) value as compact JSON text."""
    fallback = json.JSONEncoder(
        separators=(",", ":"),
        sort_keys=sort_keys,
        ensure_ascii=ensure_ascii,
        default=default,
        check_circular=False,
    )
    make = getattr(_std, "c_make_encoder", None)
    # The C quoting functions when the accelerator is there (as JSONEncoder picks them).
    quote = _std.encode_basestring_ascii if ensure_ascii else _std.encode_basestring
    if make is None:  # no C accelerator: the standard encoder
        return fallback.encode
    c_encode = make(
        None,  # markers: no circular check
        fallback.default,
        quote,
        None,  # indent
        ":",
        ",",
        sort_keys,
        False,  # skipkeys
        True,  # allow_nan, as json.dumps
    )

    def encode(value: Any) -> str:
        return "".join(c_encode(value, 0))

    return encode


MAX_JSON_DEPTH = 32  # webhook events and API bodies nest 3 deep; encoders recurse on it


def parse_json(raw: bytes | bytearray) -> tuple[Any, str | None]:
    """(value, None), or (None, why it is refused). Returns rather than raises, so no
    traceback keeps the text alive. A value nested deeper than MAX_JSON_DEPTH is refused:
    deeper ones would fail later, where the store or a log line encodes them again."""
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"malformed JSON: {exc}"
    except RecursionError:
        return None, f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
    if too_deep(value, MAX_JSON_DEPTH):
        return None, f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
    return value, None


def too_deep(value: Any, limit: int) -> bool:
    """True when lists/objects in `value` nest more than `limit` levels (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in item)
    return False

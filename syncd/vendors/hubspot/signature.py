"""HubSpot webhook signatures, version 3: compute and verify (pure functions, no I/O).

HubSpot signs ``method + uri + raw body + timestamp`` with HMAC-SHA256 keyed by the app's
client secret and sends the base64 digest in ``X-HubSpot-Signature-v3`` beside
``X-HubSpot-Request-Timestamp`` (milliseconds since the epoch). A request is rejected when
the timestamp is more than five minutes old, and the digests are compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
MAX_AGE_SECONDS = 300.0

# The comparison every check goes through; a test asserts it is the constant-time one.
constant_time_equal = hmac.compare_digest

# HubSpot decodes these escapes in the URI before signing, so we do the same.
_DECODED_ESCAPES = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}


@dataclass(frozen=True)
class SignatureCheck:
    """Outcome of a signature check; `reason` says why it failed (never echoes secrets)."""

    ok: bool
    reason: str | None = None


def normalize_uri(uri: str) -> str:
    """The URI as HubSpot signs it: the listed percent-escapes decoded (any case)."""
    out: list[str] = []
    i = 0
    while i < len(uri):
        chunk = uri[i : i + 3].upper()
        if uri[i] == "%" and chunk in _DECODED_ESCAPES:
            out.append(_DECODED_ESCAPES[chunk])
            i += 3
        else:
            out.append(uri[i])
            i += 1
    return "".join(out)


def compute_signature_v3(
    client_secret: str, method: str, uri: str, body: bytes | str, timestamp: str | int
) -> str:
    """base64(HMAC-SHA256(client_secret, method + uri + body + timestamp))."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    message = (
        method.upper().encode("utf-8")
        + normalize_uri(uri).encode("utf-8")
        + raw
        + str(timestamp).encode("utf-8")
    )
    digest = hmac.new(client_secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def check_signature_v3(
    client_secret: str,
    method: str,
    uri: str,
    body: bytes | str,
    signature: str | None,
    timestamp: str | None,
    *,
    now: float | None = None,
    max_age: float = MAX_AGE_SECONDS,
) -> SignatureCheck:
    """Verify a v3 signature and its freshness; `now` is epoch seconds (default: the clock)."""
    if not signature:
        return SignatureCheck(False, f"missing {SIGNATURE_HEADER} header")
    if not timestamp:
        return SignatureCheck(False, f"missing {TIMESTAMP_HEADER} header")
    try:
        sent_ms = int(timestamp)
    except ValueError:
        return SignatureCheck(False, f"{TIMESTAMP_HEADER} is not a millisecond timestamp")
    current = time.time() if now is None else now
    age = current - sent_ms / 1000.0
    if age > max_age:
        return SignatureCheck(False, f"request is {age:.0f}s old, older than {max_age:.0f}s")
    if age < -max_age:
        # A timestamp far in the future would let a captured request be replayed later.
        return SignatureCheck(False, "request timestamp is in the future")
    expected = compute_signature_v3(client_secret, method, uri, body, timestamp)
    if not constant_time_equal(expected.encode("ascii"), signature.strip().encode("utf-8")):
        return SignatureCheck(False, "signature does not match")
    return SignatureCheck(True)


def verify_signature_v3(
    client_secret: str,
    method: str,
    uri: str,
    body: bytes | str,
    signature: str | None,
    timestamp: str | None,
    *,
    now: float | None = None,
    max_age: float = MAX_AGE_SECONDS,
) -> bool:
    """True when the signature is valid and fresh (see `check_signature_v3` for the reason)."""
    return check_signature_v3(
        client_secret, method, uri, body, signature, timestamp, now=now, max_age=max_age
    ).ok

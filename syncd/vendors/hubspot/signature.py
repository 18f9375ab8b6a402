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
import re
import time
from dataclasses import dataclass

SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
MAX_AGE_SECONDS = 300.0

# The comparison every check goes through; a test asserts it is the constant-time one.
constant_time_equal = hmac.compare_digest

# "Base64 encode the result of the HMAC function" (HMAC SHA-256: 32 bytes, 44 characters):
# https://developers.hubspot.com/changelog/introducing-version-3-of-webhook-signatures
# https://developers.hubspot.com/docs/apps/developer-platform/build-apps/authentication/request-validation
_SIGNATURE_FORM = re.compile(r"[A-Za-z0-9+/]{43}=", re.ASCII)
# Up to 16 ASCII digits: milliseconds until the year 318857, and no int arithmetic overflow.
_TIMESTAMP_FORM = re.compile(r"[0-9]{1,16}", re.ASCII)

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


def check_headers_v3(
    signature: str | None,
    timestamp: str | None,
    *,
    now: float | None = None,
    max_age: float = MAX_AGE_SECONDS,
) -> SignatureCheck:
    """What can be checked before the body is read: both headers there, well-formed, fresh.

    A v3 signature is the base64 of a SHA-256 digest (44 characters); the timestamp is
    milliseconds since the epoch in ASCII digits. Anything else (a 400-digit number, Unicode
    digits, bytes that are not UTF-8) is refused here, so it never reaches arithmetic or an
    encoder that would fail with something other than a rejection.
    """
    if not signature:
        return SignatureCheck(False, f"missing {SIGNATURE_HEADER} header")
    if not timestamp:
        return SignatureCheck(False, f"missing {TIMESTAMP_HEADER} header")
    if not _SIGNATURE_FORM.fullmatch(signature.strip()):
        return SignatureCheck(False, f"{SIGNATURE_HEADER} is not a base64 SHA-256 digest")
    if not _TIMESTAMP_FORM.fullmatch(timestamp):
        return SignatureCheck(False, f"{TIMESTAMP_HEADER} is not a millisecond timestamp")
    current = time.time() if now is None else now
    age = current - int(timestamp) / 1000.0
    if age > max_age:
        return SignatureCheck(False, f"request is {age:.0f}s old, older than {max_age:.0f}s")
    if age < -max_age:
        # A timestamp far in the future would let a captured request be replayed later.
        return SignatureCheck(False, "request timestamp is in the future")
    return SignatureCheck(True)


def signer_v3(client_secret: str, method: str, uri: str) -> hmac.HMAC:
    """An HMAC fed with ``method + uri``; feed it the body as it arrives, then `finish_v3`."""
    mac = hmac.new(client_secret.encode("utf-8"), digestmod=hashlib.sha256)
    mac.update(method.upper().encode("utf-8") + normalize_uri(uri).encode("utf-8"))
    return mac


def finish_v3(mac: hmac.HMAC, signature: str, timestamp: str) -> SignatureCheck:
    """Compare the digest of what `mac` was fed (+ timestamp) with a pre-checked signature."""
    mac.update(timestamp.encode("ascii"))
    expected = base64.b64encode(mac.digest())
    if not constant_time_equal(expected, signature.strip().encode("ascii")):
        return SignatureCheck(False, "signature does not match")
    return SignatureCheck(True)


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
    pre = check_headers_v3(signature, timestamp, now=now, max_age=max_age)
    if not pre.ok or signature is None or timestamp is None:
        return pre
    mac = signer_v3(client_secret, method, uri)
    mac.update(body.encode("utf-8") if isinstance(body, str) else body)
    return finish_v3(mac, signature, timestamp)


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

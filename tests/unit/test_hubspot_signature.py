"""HubSpot webhook v3 signatures: valid ones pass, anything tampered or stale fails."""

from __future__ import annotations

import base64
import hashlib
import hmac

from syncd.vendors.hubspot import signature as sig

SECRET = "client-secret-123"
URI = "https://syncd.example.com/webhooks/hubspot?portal=42"
BODY = b'[{"eventId":1,"subscriptionType":"contact.creation","objectId":123,"occurredAt":1}]'
NOW = 1_750_000_000.0
TS = str(int(NOW * 1000) - 1_000)


def signed(method: str = "POST", uri: str = URI, body: bytes = BODY, ts: str = TS) -> str:
    return sig.compute_signature_v3(SECRET, method, uri, body, ts)


def test_signature_is_base64_hmac_sha256_of_method_uri_body_timestamp() -> None:
    expected = base64.b64encode(
        hmac.new(
            SECRET.encode(), b"POST" + URI.encode() + BODY + TS.encode(), hashlib.sha256
        ).digest()
    ).decode()
    assert signed() == expected


def test_valid_signature_is_accepted() -> None:
    assert sig.check_signature_v3(SECRET, "POST", URI, BODY, signed(), TS, now=NOW).ok
    assert sig.verify_signature_v3(SECRET, "POST", URI, BODY.decode(), signed(), TS, now=NOW)


def test_tampered_body_uri_or_method_is_rejected() -> None:
    good = signed()
    assert not sig.verify_signature_v3(SECRET, "POST", URI, BODY + b" ", good, TS, now=NOW)
    assert not sig.verify_signature_v3(SECRET, "POST", URI + "&x=1", BODY, good, TS, now=NOW)
    assert not sig.verify_signature_v3(SECRET, "GET", URI, BODY, good, TS, now=NOW)
    assert not sig.verify_signature_v3("other-secret", "POST", URI, BODY, good, TS, now=NOW)
    result = sig.check_signature_v3(SECRET, "PUT", URI, BODY, good, TS, now=NOW)
    assert result.reason == "signature does not match"
    assert SECRET not in (result.reason or "")


def test_timestamp_is_part_of_the_signature() -> None:
    other_ts = str(int(TS) + 1)
    assert not sig.verify_signature_v3(SECRET, "POST", URI, BODY, signed(), other_ts, now=NOW)


def test_older_than_five_minutes_is_rejected() -> None:
    old = str(int((NOW - 301) * 1000))
    result = sig.check_signature_v3(SECRET, "POST", URI, BODY, signed(ts=old), old, now=NOW)
    assert not result.ok and "old" in (result.reason or "")
    fresh = str(int((NOW - 299) * 1000))
    assert sig.verify_signature_v3(SECRET, "POST", URI, BODY, signed(ts=fresh), fresh, now=NOW)
    future = str(int((NOW + 600) * 1000))
    assert not sig.verify_signature_v3(
        SECRET, "POST", URI, BODY, signed(ts=future), future, now=NOW
    )


def test_missing_or_malformed_headers_are_rejected() -> None:
    assert not sig.check_signature_v3(SECRET, "POST", URI, BODY, None, TS, now=NOW).ok
    assert not sig.check_signature_v3(SECRET, "POST", URI, BODY, signed(), None, now=NOW).ok
    assert not sig.check_signature_v3(SECRET, "POST", URI, BODY, signed(), "yesterday", now=NOW).ok


def test_encoded_uri_characters_are_decoded_as_hubspot_does() -> None:
    encoded = "https://syncd.example.com/webhooks/hubspot?next=%2Fa%3Ab%40c"
    decoded = "https://syncd.example.com/webhooks/hubspot?next=/a:b@c"
    assert sig.normalize_uri(encoded) == decoded
    assert sig.verify_signature_v3(SECRET, "POST", encoded, BODY, signed(uri=decoded), TS, now=NOW)


def test_comparison_is_constant_time() -> None:
    assert sig.constant_time_equal is hmac.compare_digest

"""Matching records across systems: email normalisation and validity, account keys."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# Deliberately simple and strict enough for what CRMs accept: one @, a dot in the domain,
# no spaces, within the RFC 5321 length limit.
_EMAIL = re.compile(
    r"^[^@\s\"<>,;:()\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)


def normalize_email(value: object) -> str | None:
    """Lower-cased, trimmed email, or None when empty or not a string."""
    if not isinstance(value, str):
        return None
    v = value.strip().lower()
    return v or None


def is_valid_email(value: object) -> bool:
    """Whether `value` is a syntactically valid email address."""
    v = normalize_email(value)
    return v is not None and is_valid_normal_email(v)


def is_valid_normal_email(value: str) -> bool:
    """is_valid_email for text already trimmed and lower-cased (no second normalisation)."""
    return len(value) <= 254 and _EMAIL.match(value) is not None


def normalize_domain(value: object) -> str | None:
    """A company website or domain reduced to its host without ``www.`` (for account matching)."""
    if not isinstance(value, str) or not value.strip():
        return None
    v = value.strip().lower()
    host = urlsplit(v if "://" in v else f"http://{v}").hostname or ""
    host = host.removeprefix("www.")
    return host or None


def normalize_name(value: object) -> str | None:
    """A company name for matching: case-folded with collapsed whitespace."""
    if not isinstance(value, str):
        return None
    v = " ".join(value.split()).casefold()
    return v or None

"""One-line troubleshooting hints per error category, shown with failing entries everywhere."""

from __future__ import annotations

import re

from syncd.model import ErrorCategory

_CATEGORY_HINTS: dict[ErrorCategory, str] = {
    ErrorCategory.VALIDATION: (
        "Validation: correct {field} in the source record so it passes the target's rule,"
        " then retry."
    ),
    ErrorCategory.DUPLICATE: (
        "Duplicate: the target already holds a record with the same key; merge or remove the"
        " duplicate (or relax the duplicate rule), then retry."
    ),
    ErrorCategory.CONVERTED_LEAD: (
        "Converted lead: Salesforce converted this lead into a contact; tag the hub record"
        " as a contact so it syncs to the converted contact."
    ),
    ErrorCategory.REJECTED: (
        "Rejected by the target ({code}): read the vendor message, fix the record, then retry."
    ),
    ErrorCategory.TRANSIENT: (
        "Temporary failure (network, 5xx, lock): syncd retries by itself with backoff;"
        " retry now only once the vendor answers again."
    ),
    ErrorCategory.AUTH: (
        "Authentication failed: reconnect the credentials (new token or OAuth grant) in the"
        " config and reload with SIGHUP; the direction resumes on the next successful call."
    ),
    ErrorCategory.QUOTA: (
        "API quota exhausted: Salesforce counts a rolling 24-hour window, so calls free up"
        " within a day; syncd resumes by itself (raise the org's limit or quota_reserve)."
    ),
    ErrorCategory.MAPPING: (
        "Mapping: {field} is mapped but missing (or not writable) in the target; create the"
        " field or fix [sync.objects.*.mapping], then reload and retry."
    ),
    ErrorCategory.STORE: (
        "State store unreachable: check the disk (SQLite) or the MySQL server; nothing is lost,"
        " work resumes when the store answers."
    ),
}

_CODE_HINTS: dict[str, str] = {
    "REQUIRED_FIELD_MISSING": "Validation: {field} is required but empty; fill it in, then retry.",
    "INVALID_EMAIL": "Validation: {field} is not a valid email address; correct it, then retry.",
    "INVALID_EMAIL_ADDRESS": (
        "Validation: {field} is not a valid email address; correct it, then retry."
    ),
    "FIELD_CUSTOM_VALIDATION_EXCEPTION": (
        "Validation: a Salesforce validation rule rejected {field}; see the rule named in the"
        " message, fix the value, then retry."
    ),
    "DUPLICATES_DETECTED": (
        "Duplicate: a Salesforce duplicate rule matched the existing record named in the"
        " message; merge the records or adjust the rule, or set"
        " crm.duplicate_rules_allow_save = true (rules that only alert), then retry."
    ),
    "CANNOT_UPDATE_CONVERTED_LEAD": _CATEGORY_HINTS[ErrorCategory.CONVERTED_LEAD],
}

_QUOTED = re.compile(r"""['"]([A-Za-z_][\w.:-]*)['"]""")
_FIELDS = re.compile(r"fields?[:=]?\s*\[?\s*([A-Za-z_][\w.]*)")
_BRACKET = re.compile(r"\[\s*['\"]?([A-Za-z_][\w.]*)")


def field_of(message: str | None) -> str | None:
    """The field a vendor or validation message names, if one can be told."""
    if not message:
        return None
    for pattern in (_QUOTED, _BRACKET, _FIELDS):
        m = pattern.search(message)
        if m:
            return m.group(1)
    return None


def hint(category: ErrorCategory | str | None, code: str | None, message: str | None) -> str:
    """A one-line hint for an error; empty when there is no category."""
    if category is None:
        return ""
    try:
        cat = ErrorCategory(category)
    except ValueError:
        return ""
    field = field_of(message)
    template = _CODE_HINTS.get(code or "") or _CATEGORY_HINTS[cat]
    return template.format(
        field=f"the field {field!r}" if field else "the field named in the message",
        code=code or cat.value,
    )


def category_hint(category: ErrorCategory) -> str:
    """The generic hint of a category (for grouped counts, where no message applies)."""
    return hint(category, None, None)


def exclusion_group(reason: str | None) -> str:
    """The group of an exclusion reason: the text before its first colon (filtered, …)."""
    if not reason:
        return "unknown"
    head, sep, _ = reason.partition(":")
    return head.strip() if sep else reason.strip()

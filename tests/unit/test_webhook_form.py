"""The webhook form parser decodes exactly what the standard library's parse_qsl does."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.vendors.activecampaign.webhook import parse_form

# Text built from the pieces that matter: separators, escapes (valid, broken, non-UTF-8),
# plus signs, blanks and arbitrary unicode.
_PIECES = st.one_of(
    st.sampled_from(["&", "=", "+", "%", "%2", "%20", "%3D", "%26", "%C3%A9", "%ff", "%E2%82"]),
    st.text(max_size=6),
)
FORM_TEXT = st.lists(_PIECES, max_size=30).map("".join)


def reference(text: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(text, keep_blank_values=True, errors="strict"))


@given(FORM_TEXT)
def test_same_result_or_same_refusal_as_parse_qsl(text: str) -> None:
    try:
        want = reference(text)
    except UnicodeDecodeError:
        with pytest.raises(UnicodeDecodeError):
            parse_form(text)
        return
    assert parse_form(text) == want


def test_activecampaign_body() -> None:
    body = urllib.parse.urlencode(
        {
            "type": "update",
            "contact[id]": "42",
            "contact[email]": "ada+news@example.com",
            "contact[first_name]": "Adá",
            "contact[tags]": "added-to-salesforce-contact, vip",
            "contact[fields][company]": "",
        }
    )
    form = parse_form(body)
    assert form["contact[email]"] == "ada+news@example.com"
    assert form["contact[first_name]"] == "Adá"
    assert form["contact[fields][company]"] == ""
    assert form == reference(body)

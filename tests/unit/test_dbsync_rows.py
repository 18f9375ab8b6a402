"""dbsync's per-row logic: the content hash is pinned, mapping keeps its rules."""

from __future__ import annotations

from datetime import date
from typing import Any

from syncd.config import DbsyncSettings
from syncd.dbsync.rows import MappedRow, build_plan, map_row, row_hash, row_hasher
from syncd.model import FieldInfo


class _Col:
    def __init__(self, name: str) -> None:
        self.name = name
        self.type = "varchar"


def _plan(company_required: bool = False, **over: Any) -> Any:
    cfg = DbsyncSettings(
        name="pin",
        dsn="mysql://u@h/d",
        table="t",
        list="3",
        mapping={"email": "email", "first": "firstName", "co": "COMPANY", "tags": "tags"},
        **over,
    )
    hub = [
        FieldInfo(name="email", type="text", max_length=255),
        FieldInfo(name="firstName", type="text", max_length=5),
        FieldInfo(name="COMPANY", type="text", required=company_required),
    ]
    return build_plan(cfg, [_Col(n) for n in ("id", "email", "first", "co", "tags")], hub)


def test_row_hash_is_stable_across_versions() -> None:
    # Stored hashes from earlier runs must still match, or every row would be resent once.
    row = MappedRow(
        "7",
        "ada@example.com",
        {"email": "Ada@Example.com", "firstName": "Ådä", "COMPANY": 'Co "1"'},
        ("vip", "trial"),
    )
    assert row_hash(row, "3") == "8fc6acfc8e0f32fea0375058704b4f07"
    reordered = MappedRow(row.key, row.email, dict(reversed(row.fields.items())), row.tags)
    assert row_hash(reordered, "3") == row_hash(row, "3")
    assert row_hash(row, "4") != row_hash(row, "3")


def test_map_row_normalises_and_reports_problems() -> None:
    plan = _plan()
    ok = map_row(plan, [12, "  Ada@Example.COM ", "Ada", date(2020, 1, 2), "VIP, vip ;trial,,"])
    assert (ok.key, ok.email, ok.problems) == ("12", "ada@example.com", ())
    assert dict(ok.fields) == {
        "email": "Ada@Example.COM",
        "firstName": "Ada",
        "COMPANY": "2020-01-02",
    }
    assert ok.tags == ("VIP", "trial")
    bad = map_row(plan, [None, "no-at-sign", "Adalbert", None, None])
    assert bad.key == "" and bad.email == "no-at-sign"
    assert [p.code for p in bad.problems] == ["INVALID_EMAIL", "TOO_LONG"]
    assert map_row(plan, [1, None, "", "", None]).problems[0].code == "MISSING_REQUIRED"


def test_row_hasher_gives_row_hash_for_every_kind_of_row() -> None:
    # The plan's hasher is what runs write into the store: any difference from row_hash
    # would make every row look changed (and be resent) once.
    plan = _plan()
    hasher = row_hasher(plan)
    rows = [
        [1, "ada@example.com", "Ada", "Acme", "vip"],
        [2, "bob@example.com", None, None, None],  # only email
        [3, "not an email", "Bo", "Co", "a;b"],  # no email field at all
        [4, "c@example.com", 'Q"uo\\te', "\u00e5\U0001f600\x01", "t1, t2 ,T1"],
        [5, "d@example.com", "", "Only co", ""],
    ]
    for raw in rows:
        mapped = map_row(plan, raw)
        assert hasher(mapped) == row_hash(mapped, "3"), raw
    # Rows the plan could not have made still hash as row_hash does.
    odd = MappedRow("9", "e@example.com", {"email": "e@example.com", "Other": "x"}, ())
    assert hasher(odd) == row_hash(odd, "3")
    typed = MappedRow("9", "e@example.com", {"email": "e@example.com", "COMPANY": 7}, ("t",))  # type: ignore[dict-item]
    assert hasher(typed) == row_hash(typed, "3")
    fields = {"email": "Ada@Example.com", "firstName": "Ådä", "COMPANY": 'Co "1"'}
    pinned = MappedRow("7", "ada@example.com", fields, ("vip", "trial"))
    assert hasher(pinned) == "8fc6acfc8e0f32fea0375058704b4f07"


def test_null_clears_sends_empty_values_and_still_requires_required_fields() -> None:
    clears, keeps = _plan(True), _plan(True, null_clears=False)
    row = [1, "ada@example.com", None, "Co", ""]
    assert dict(map_row(clears, row).fields) == {
        "email": "ada@example.com",
        "firstName": "",
        "COMPANY": "Co",
    }
    assert dict(map_row(keeps, row).fields) == {"email": "ada@example.com", "COMPANY": "Co"}
    # A required field (COMPANY here) that is NULL or empty fails the row.
    for empty in (None, ""):
        bad = map_row(clears, [2, "b@example.com", "B", empty, None])
        assert [p.code for p in bad.problems] == ["MISSING_REQUIRED"]
    # The option is part of what decides the mapping: fingerprints differ.
    from syncd.dbsync.rows import fingerprint_prefix

    assert fingerprint_prefix(clears) != fingerprint_prefix(keeps)

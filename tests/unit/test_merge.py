"""The field-level merge: a table of cases, then properties over random records."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.sync.merge import Side, merge, same

HUB, CRM = Side.HUB, Side.CRM
BOTH = (HUB, CRM)

# (case, base, hub, crm, winner, writes) -> (to_crm, to_hub, base after, overridden fields)
CASES: list[
    tuple[
        str,
        dict[str, Any],
        dict[str, Any],
        dict[str, Any],
        Side,
        tuple[Side, ...],
        dict[str, Any],
        dict[str, Any],
        dict[str, Any],
        set[str],
    ]
] = [
    (
        "hub edit only: the CRM takes it, the base follows",
        {"Phone": "1"},
        {"Phone": "2"},
        {"Phone": "1"},
        CRM,
        BOTH,
        {"Phone": "2"},
        {},
        {"Phone": "2"},
        set(),
    ),
    (
        "CRM edit only, flush: nothing to write to the CRM, the hub waits for the pull",
        {"Phone": "1", "LastName": "A"},
        {"Phone": "1", "LastName": "B"},
        {"Phone": "9", "LastName": "A"},
        CRM,
        (CRM,),
        {"LastName": "B"},
        {},
        {"Phone": "1", "LastName": "B"},
        set(),
    ),
    (
        "the same CRM edit at the pull reaches the hub",
        {"Phone": "1", "LastName": "B"},
        {"Phone": "1", "LastName": "B"},
        {"Phone": "9", "LastName": "B"},
        CRM,
        (HUB,),
        {},
        {"Phone": "9"},
        {"Phone": "9", "LastName": "B"},
        set(),
    ),
    (
        "conflict, CRM wins",
        {"Phone": "1"},
        {"Phone": "h"},
        {"Phone": "c"},
        CRM,
        BOTH,
        {},
        {"Phone": "c"},
        {"Phone": "c"},
        {"Phone"},
    ),
    (
        "conflict, hub wins",
        {"Phone": "1"},
        {"Phone": "h"},
        {"Phone": "c"},
        HUB,
        BOTH,
        {"Phone": "h"},
        {},
        {"Phone": "h"},
        {"Phone"},
    ),
    (
        "conflict, the winner cleared the field: the other side's value is kept",
        {"Phone": "1"},
        {"Phone": "h"},
        {"Phone": ""},
        CRM,
        BOTH,
        {"Phone": "h"},
        {},
        {"Phone": "h"},
        {"Phone"},
    ),
    (
        "conflict on a flush, CRM wins: nothing written, the base waits",
        {"Phone": "1"},
        {"Phone": "h"},
        {"Phone": "c"},
        CRM,
        (CRM,),
        {},
        {},
        {"Phone": "1"},
        {"Phone"},
    ),
    (
        "both sides made the same edit: agreed, no write",
        {"Phone": "1"},
        {"Phone": "2"},
        {"Phone": "2"},
        CRM,
        BOTH,
        {},
        {},
        {"Phone": "2"},
        set(),
    ),
    (
        "a cleared field is an edit: the clear crosses",
        {"Phone": "1"},
        {"Phone": None},
        {"Phone": "1"},
        CRM,
        BOTH,
        {"Phone": None},
        {},
        {"Phone": None},
        set(),
    ),
    (
        "absent is not empty: a field the hub does not name is left alone",
        {"Phone": "1", "LastName": "A"},
        {"LastName": "B"},
        {"Phone": "1", "LastName": "A"},
        CRM,
        BOTH,
        {"LastName": "B"},
        {},
        {"Phone": "1", "LastName": "B"},
        set(),
    ),
    (
        "new link: the non-empty values fill the empty side",
        {},
        {"Email": "a@x.io", "Phone": "5"},
        {},
        CRM,
        BOTH,
        {"Email": "a@x.io", "Phone": "5"},
        {},
        {"Email": "a@x.io", "Phone": "5"},
        set(),
    ),
    (
        "new link onto an existing record: differing values are conflicts",
        {},
        {"Phone": "h", "LastName": "L"},
        {"Phone": "c", "LastName": None},
        CRM,
        BOTH,
        {"LastName": "L"},
        {"Phone": "c"},
        {"Phone": "c", "LastName": "L"},
        {"Phone"},
    ),
    (
        "numbers and spellings of one value are not edits",
        {"Amount": 5.0, "Flag": True},
        {"Amount": "5", "Flag": "true"},
        {"Amount": 5, "Flag": True},
        CRM,
        BOTH,
        {},
        {},
        {"Amount": 5.0, "Flag": True},
        set(),
    ),
    (
        "a field mapped after linking: agreeing sides fill its base",
        {},
        {"Title": "x"},
        {"Title": "x"},
        CRM,
        BOTH,
        {},
        {},
        {"Title": "x"},
        set(),
    ),
]


@pytest.mark.parametrize(
    ("base", "hub", "crm", "winner", "writes", "to_crm", "to_hub", "after", "lost"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_merge_table(
    base: dict[str, Any],
    hub: dict[str, Any],
    crm: dict[str, Any],
    winner: Side,
    writes: tuple[Side, ...],
    to_crm: dict[str, Any],
    to_hub: dict[str, Any],
    after: dict[str, Any],
    lost: set[str],
) -> None:
    m = merge(base, hub, crm, winner=winner, writes=writes)
    assert m.to_crm == to_crm
    assert m.to_hub == to_hub
    assert m.base == after
    assert set(m.overridden) == lost


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("", None, True),
        ("  ", None, True),
        ("5", 5, True),
        ("5", 5.0, True),
        ("5.5", 5.5, True),
        ("0123", "123", False),
        ("x ", "x", True),
        ("X", "x", False),
        (True, "true", True),
        (False, "true", False),
        ("abc", 5, False),
        (None, "0", False),
    ],
)
def test_same(a: Any, b: Any, equal: bool) -> None:
    assert same(a, b) is equal
    assert same(b, a) is equal


FIELDS = ("Email", "Phone", "LastName")
VALUES = st.one_of(st.none(), st.sampled_from(["", "a", "b", "c", "5"]))
RECORD = st.dictionaries(st.sampled_from(FIELDS), VALUES)


def apply(side: dict[str, Any], writes: dict[str, Any]) -> dict[str, Any]:
    return {**side, **writes}


@settings(max_examples=400, deadline=None)
@given(base=RECORD, hub=RECORD, crm=RECORD, winner=st.sampled_from(list(Side)))
def test_a_two_way_merge_converges_and_keeps_every_edit_no_rule_overrode(
    base: dict[str, Any], hub: dict[str, Any], crm: dict[str, Any], winner: Side
) -> None:
    m = merge(base, hub, crm, winner=winner, writes=BOTH)
    hub_after, crm_after = apply(hub, m.to_hub), apply(crm, m.to_crm)
    for name in set(hub) | set(crm):
        if name in hub_after and name in crm_after:
            assert same(hub_after[name], crm_after[name]), name
            assert same(m.base[name], crm_after[name]), name
        for side, edited in ((Side.HUB, hub), (Side.CRM, crm)):
            if (
                name in edited
                and not same(edited[name], base.get(name))
                and name not in m.overridden
            ):
                assert same(hub_after.get(name, crm_after.get(name)), edited[name])
                assert same(crm_after.get(name, hub_after.get(name)), edited[name]), side


@settings(max_examples=400, deadline=None)
@given(
    base=RECORD,
    hub=RECORD,
    crm=RECORD,
    winner=st.sampled_from(list(Side)),
    pull_first=st.booleans(),
)
def test_a_flush_and_a_pull_in_either_order_end_equal(
    base: dict[str, Any], hub: dict[str, Any], crm: dict[str, Any], winner: Side, pull_first: bool
) -> None:
    # Each operation reads both sides as they are (every field named), writes its own target.
    hub = {f: hub.get(f) for f in FIELDS}
    crm = {f: crm.get(f) for f in FIELDS}
    order = (HUB, CRM) if pull_first else (CRM, HUB)
    for target in order:
        m = merge(base, hub, crm, winner=winner, writes=(target,))
        hub, crm, base = apply(hub, m.to_hub), apply(crm, m.to_crm), m.base
    for name in FIELDS:
        assert same(hub[name], crm[name]), name
        assert same(base.get(name), crm[name]), name

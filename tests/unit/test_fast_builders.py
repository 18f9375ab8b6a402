"""The per-record shortcuts of the hot paths build exactly what the plain ways build."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from syncd.jsontext import compact_encoder
from syncd.model import Change, Direction, ObjectType, Record, builder
from syncd.store.types import RecordLink
from syncd.sync.flight import Outcome


def test_builder_makes_the_dataclass_instance() -> None:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "object": ObjectType.CONTACT,
        "hub_id": "1",
        "crm_id": "003A",
        "email": "a@example.com",
        "sync_tags": frozenset({"t"}),
        "last_synced_at": now,
    }
    built = builder(RecordLink)(**fields)
    plain = RecordLink(**fields)
    assert type(built) is RecordLink
    assert built == plain and hash(built) == hash(plain) and repr(built) == repr(plain)
    assert built.status == "linked" and built.id is None  # defaults filled
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.hub_id = "2"  # type: ignore[misc]

    change = builder(Change)(
        direction=Direction.OUTBOUND,
        object=ObjectType.LEAD,
        record_key="00Q1",
        source="pull",
        fields={},
    )
    assert change == Change(Direction.OUTBOUND, ObjectType.LEAD, "00Q1", "pull", {})
    rec = builder(Record)(object=ObjectType.CONTACT, id="003B", fields={"Id": "003B"})
    assert rec == Record(ObjectType.CONTACT, "003B", {"Id": "003B"}) and rec.tags == frozenset()


def test_builder_factories_are_fresh_and_names_are_checked() -> None:
    make = builder(Outcome)
    a, b = make(rec=None, kind="processed"), make(rec=None, kind="processed")
    assert a == Outcome(None, "processed")  # type: ignore[arg-type]
    assert a.transferred == {} and a.transferred is not b.transferred
    with pytest.raises(TypeError):
        make(rec=None, kind="processed", linked=None)  # no such field
    with pytest.raises(TypeError):
        make(kind="processed")  # a field without default left out


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "é": 'ü\u2028\n"', "n": None, "f": 1.5, "big": 10**30, "l": [1, {"x": True}]},
        {"nan": float("nan"), "inf": float("-inf"), "d": datetime(2024, 1, 2, tzinfo=UTC)},
        {"dec": Decimal("1.10"), "z": {"b": 2, "a": 1}},
        "text",
        [1, "two", None],
    ],
)
@pytest.mark.parametrize("sort_keys", [False, True])
@pytest.mark.parametrize("ensure_ascii", [False, True])
def test_compact_encoder_writes_what_json_writes(
    value: Any, sort_keys: bool, ensure_ascii: bool
) -> None:
    std = json.JSONEncoder(
        separators=(",", ":"), sort_keys=sort_keys, ensure_ascii=ensure_ascii, default=str
    )
    fast = compact_encoder(sort_keys=sort_keys, ensure_ascii=ensure_ascii, default=str)
    assert fast(value) == std.encode(value)


def test_compact_encoder_refuses_what_json_refuses() -> None:
    fast = compact_encoder(default=None)
    with pytest.raises(TypeError):
        fast({"when": object()})

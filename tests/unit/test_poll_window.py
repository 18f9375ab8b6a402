"""The polling fallback's overlap window: what it skips, what it keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from syncd.model import ObjectType, Record
from syncd.sync.poll_window import MAX_SEEN, Seen

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rec(rid: str, seconds: float | None) -> Record:
    at = None if seconds is None else T0 + timedelta(seconds=seconds)
    return Record(ObjectType.CONTACT, rid, {}, modified_at=at)


def test_a_record_taken_is_skipped_until_it_changes_again() -> None:
    seen = Seen({}).add([rec("1", 0), rec("2", 5)], overlap=60)
    assert [r.id for r in seen.fresh([rec("1", 0), rec("2", 5), rec("3", 4)])] == ["3"]
    assert [r.id for r in seen.fresh([rec("1", 7)])] == ["1"]  # changed since
    assert seen.fresh([rec("2", 1)]) == []  # an older version search still shows
    assert [r.id for r in seen.fresh([rec("4", None)])] == ["4"]  # no time: never skipped


def test_only_the_window_is_kept_and_at_most_max_seen() -> None:
    seen = Seen({}).add([rec("old", 0), rec("new", 100)], overlap=60)
    assert set(seen.stamps) == {"new"}
    many = Seen({}).add([rec(str(i), i / 1000) for i in range(MAX_SEEN + 10)], overlap=60)
    assert len(many.stamps) == MAX_SEEN and "0" not in many.stamps


def test_stored_form_round_trips_and_garbage_reads_as_empty() -> None:
    seen = Seen({}).add([rec("1", 0)], overlap=60)
    assert Seen.decode(seen.encode()) == seen
    for raw in (None, "", "not json", "[1, 2]", '{"1": "x"}'):
        assert Seen.decode(raw).stamps == {}

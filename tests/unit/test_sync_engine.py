"""Inbound flushes and outbound pulls in-process: the real flusher and puller on the
in-memory store, with in-memory vendors (tests/unit/fakes.py). Judged by both sides."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from syncd.errors import RequestRejected, TransientError
from syncd.model import Change, Direction, ObjectType, Page, Record
from syncd.store.types import EntryFilter
from syncd.sync.flight import HubWrite
from tests.unit.fakes import Engine

CONTACT = ObjectType.CONTACT
INBOUND = EntryFilter(direction=Direction.INBOUND)


async def linked(e: Engine) -> tuple[str, str]:
    """A CRM contact pulled into the hub: (crm id, hub id)."""
    e.crm.put(
        CONTACT,
        "003A",
        {"Email": "ann@x.io", "FirstName": "Ann", "LastName": "Old", "Phone": "100"},
    )
    counts = await e.pull()
    assert counts.processed == 1
    [(hub_id, fields)] = e.hub.records[CONTACT].items()
    assert fields == {"email": "ann@x.io", "firstName": "Ann", "lastName": "Old", "phone": "100"}
    assert e.hub.tags[hub_id] == {"created-from-salesforce-contact"}
    return "003A", hub_id


async def test_a_hub_change_reaches_the_crm_and_keeps_the_crms_own_edit() -> None:
    e = await Engine.started()
    crm_id, hub_id = await linked(e)
    e.crm.edit(crm_id, Phone="555")
    await e.hub_edit(hub_id, lastName="New")
    counts = await e.flush()
    assert counts.processed == 1
    assert e.crm_values(crm_id)["Phone"] == "555"  # not the hub's stale 100
    assert e.crm_values(crm_id)["LastName"] == "New"
    await e.pull()
    assert e.hub_values(hub_id)["phone"] == "555"
    assert e.hub_values(hub_id)["lastName"] == "New"


@pytest.mark.parametrize("winner", ["crm", "hub"])
@pytest.mark.parametrize("pull_first", [False, True])
async def test_a_conflict_ends_on_the_winner(winner: str, pull_first: bool) -> None:
    e = await Engine.started(winner)
    crm_id, hub_id = await linked(e)
    await e.hub_edit(hub_id, phone="from-hub")
    e.crm.edit(crm_id, Phone="from-crm")
    for step in (e.pull, e.flush) if pull_first else (e.flush, e.pull):
        await step()
    await e.flush()
    await e.pull()
    want = f"from-{winner}"
    assert e.crm_values(crm_id)["Phone"] == want
    assert e.hub_values(hub_id)["phone"] == want


async def test_the_losing_edit_is_recorded_on_the_entry() -> None:
    e = await Engine.started("crm")
    crm_id, hub_id = await linked(e)
    await e.hub_edit(hub_id, phone="from-hub")
    e.crm.edit(crm_id, Phone="from-crm")
    await e.flush()
    [entry] = [x for x in await e.store.list_entries(INBOUND) if x.record_key == hub_id]
    assert "Phone" in entry.skipped_fields
    assert "crm wins" in entry.skipped_fields["Phone"]


async def test_an_empty_winner_keeps_the_other_value() -> None:
    e = await Engine.started("crm")
    crm_id, hub_id = await linked(e)
    e.crm.edit(crm_id, Phone=None)
    await e.hub_edit(hub_id, phone="from-hub")
    await e.flush()
    await e.pull()
    assert e.crm_values(crm_id)["Phone"] == "from-hub"
    assert e.hub_values(hub_id)["phone"] == "from-hub"


async def test_unchanged_records_cost_no_write_either_way() -> None:
    e = await Engine.started()
    crm_id, hub_id = await linked(e)
    await e.hub_edit(hub_id)  # a webhook, nothing changed
    writes = e.crm.calls["write"]
    counts = await e.flush()
    assert counts.skipped == 1 and e.crm.calls["write"] == writes
    e.crm.edit(crm_id)  # touched, same values
    hub_writes, hub_reads = e.hub.calls["write"], e.hub.calls["get"]
    counts = await e.pull()
    assert counts.skipped == 1
    assert (e.hub.calls["write"], e.hub.calls["get"]) == (hub_writes, hub_reads)


async def test_a_refused_record_is_an_error_and_the_others_go() -> None:
    e = await Engine.started()
    await e.hub_edit("7", email="a@x.io", lastName="A")
    await e.hub_edit("8", email="b@x.io", lastName="")  # Salesforce requires LastName
    counts = await e.flush()
    assert (counts.processed, counts.errors) == (1, 1)
    assert [f["Email"] for f in e.crm.records[CONTACT].values()] == ["a@x.io"]


async def test_one_flush_reads_each_side_once_per_batch() -> None:
    e = await Engine.started()
    for i in range(50):
        await e.hub_edit(str(100 + i), email=f"p{i}@x.io", lastName=f"L{i}")
    e.crm.calls.clear()
    e.hub.calls.clear()
    counts = await e.flush()
    assert counts.processed == 50
    assert e.hub.calls == {"get": 1}
    assert e.crm.calls == {"query": 1, "write": 1}


async def test_a_record_the_hub_refuses_to_read_does_not_hold_back_the_others() -> None:
    e = await Engine.started()
    for i in range(5):
        await e.hub_edit(str(10 + i), email=f"ok{i}@x.io", lastName=f"L{i}")
    await e.hub_edit("99", email="bad@x.io", lastName="Bad")
    e.hub.poison["99"] = RequestRejected("hub: HTTP 400: bad id", status=400)
    counts = await e.flush()
    assert counts.processed == 5 and counts.error is None
    [bad] = [x for x in await e.store.list_entries(INBOUND) if x.record_key == "99"]
    assert bad.attempts == 1 and bad.error_code == "BATCH_FAILURE"
    assert sorted(f["Email"] for f in e.crm.records[CONTACT].values()) == [
        f"ok{i}@x.io" for i in range(5)
    ]


async def test_a_record_failing_transiently_flush_after_flush_is_isolated() -> None:
    e = await Engine.started()
    for i in range(3):
        await e.hub_edit(str(10 + i), email=f"ok{i}@x.io", lastName=f"L{i}")
    await e.hub_edit("99", email="bad@x.io", lastName="Bad")
    e.hub.poison["99"] = TransientError("hub: HTTP 503")
    # An outage looks the same at first: the whole flush fails and nothing is blamed.
    for _ in range(2):
        counts = await e.flush()
        assert counts.error is not None and counts.processed == 0
        e.flusher._backoff_until = 0.0  # the test does not wait out the backoff
    counts = await e.flush()
    assert counts.processed == 3 and counts.error is None
    [bad] = [x for x in await e.store.list_entries(INBOUND) if x.record_key == "99"]
    assert bad.attempts == 1 and bad.status.value == "pending"


async def test_when_nothing_goes_through_it_is_the_vendor_and_no_record_is_blamed() -> None:
    e = await Engine.started()
    for i in range(4):
        await e.hub_edit(str(10 + i), email=f"ok{i}@x.io", lastName=f"L{i}")
        e.hub.poison[str(10 + i)] = RequestRejected("hub: HTTP 400", status=400)
    counts = await e.flush()
    assert counts.error is not None and counts.processed == 0
    assert all(x.attempts == 0 for x in await e.store.list_entries(INBOUND))


async def _taken_over(e: Engine, direction: Direction) -> None:
    """Another instance takes the batch over: this claim's lease ran out (the process
    stalled past it) and the entries were reclaimed and claimed again by "other"."""
    for x in await e.store.list_entries(EntryFilter(direction=direction)):
        await e.store.release([x.id], owner=x.claimed_by)
    await e.store.claim_pending(direction, limit=100, owner="other", lease_seconds=60)


async def test_a_flush_that_lost_its_claim_writes_nothing() -> None:
    e = await Engine.started()
    for i in range(3):
        await e.hub_edit(str(10 + i), email=f"p{i}@x.io", lastName=f"L{i}")
    read = e.hub.get_by_ids

    async def stalled(*args: Any, **kw: Any) -> list[Record]:
        out = await read(*args, **kw)
        await _taken_over(e, Direction.INBOUND)
        return out

    e.hub.get_by_ids = stalled  # type: ignore[method-assign]
    await e.flush()
    assert "write" not in e.crm.calls and not e.crm.records[CONTACT]
    entries = await e.store.list_entries(INBOUND)
    assert [(x.status.value, x.lease_owner) for x in entries] == [("processing", "other")] * 3


async def test_a_pull_that_lost_its_claim_writes_nothing_to_the_hub() -> None:
    e = await Engine.started()
    fields = {"Email": "q@x.io", "FirstName": "Q", "LastName": "Queued"}
    e.crm.put(CONTACT, "003Q", fields)
    await e.store.enqueue([Change(Direction.OUTBOUND, CONTACT, "003Q", "poll", fields)])
    plan = e.puller._planner.plan_claimed

    async def stalled(*args: Any, **kw: Any) -> list[HubWrite]:
        out = await plan(*args, **kw)
        await _taken_over(e, Direction.OUTBOUND)
        return out

    e.puller._planner.plan_claimed = stalled  # type: ignore[method-assign]
    await e.pull()
    # The pull read 003Q as well and left it to the queued entry, which is now the other
    # instance's to write: this one writes nothing.
    assert "write" not in e.hub.calls and not e.hub.records[CONTACT]
    [entry] = await e.store.list_entries(EntryFilter(direction=Direction.OUTBOUND))
    assert (entry.status.value, entry.lease_owner) == ("processing", "other")


async def test_a_pull_whose_job_lock_was_taken_over_stops_before_writing() -> None:
    e = await Engine.started()
    e.crm.put(CONTACT, "003A", {"Email": "a@x.io", "LastName": "A"})
    pages = e.crm.changed_since

    async def stalled(*args: Any, **kw: Any) -> AsyncIterator[Page]:
        # The pull stalls past its lock's time to live; another instance pulls meanwhile.
        await e.store.release_job_lock("pull:contact", "t")
        assert await e.store.try_job_lock("pull:contact", "other", 60)
        async for page in pages(*args, **kw):
            yield page

    e.crm.changed_since = stalled  # type: ignore[method-assign]
    counts = await e.pull()
    assert counts.error is not None and "another instance took the job over" in counts.error
    assert "write" not in e.hub.calls and not e.hub.records[CONTACT]
    # What it read waits in the queue, as after any failed pull.
    [entry] = await e.store.list_entries(EntryFilter(direction=Direction.OUTBOUND))
    assert entry.record_key == "003A" and entry.status.value == "pending"
    # It left the other instance's lock alone.
    assert not await e.store.try_job_lock("pull:contact", "t", 60)

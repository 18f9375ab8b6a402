"""The shared pause state of a direction, as one instance keeps its copy of it."""

from __future__ import annotations

import asyncio

from syncd.errors import AuthError
from syncd.model import Direction
from syncd.store.memory import MemoryStore
from syncd.sync.gate import DirectionGate


async def _store() -> MemoryStore:
    s = MemoryStore()
    await s.open()
    return s


async def test_another_instances_pause_and_resume_are_seen_once_the_copy_is_old() -> None:
    store = await _store()
    here, there = DirectionGate(Direction.INBOUND, store), DirectionGate(Direction.INBOUND, store)
    await here.load()
    await there.set_paused(True)
    await here.refresh(max_age=60)  # a fresh copy is not read again
    assert here.blocked is None
    await here.refresh(max_age=0)
    assert here.blocked == "paused by an operator" and here.view()["paused"] is True
    await there.set_paused(False)
    await here.refresh(max_age=0)
    assert here.blocked is None


async def test_an_integration_error_reported_elsewhere_is_seen_and_cleared_here() -> None:
    store = await _store()
    here, there = DirectionGate(Direction.OUTBOUND, store), DirectionGate(Direction.OUTBOUND, store)
    await there.report(AuthError("hub: HTTP 401"))
    await here.load()
    assert here.error is not None and here.view()["error"]["message"] == "hub: HTTP 401"
    await here.recovered()  # a write here went through
    await there.load()
    assert there.error is None and await store.integration_errors() == []


async def test_a_read_overtaken_by_a_pause_does_not_put_the_old_state_back() -> None:
    store = await _store()
    gate = DirectionGate(Direction.INBOUND, store)
    read = store.get_cursor

    async def slow_read(name: str) -> str | None:
        value = await read(name)
        await asyncio.sleep(0.05)  # the pause lands while this read is on its way
        return value

    store.get_cursor = slow_read  # type: ignore[method-assign]
    await asyncio.gather(gate.refresh(max_age=0), gate.set_paused(True))
    assert gate.blocked == "paused by an operator"
    await gate.refresh(max_age=0)
    assert gate.blocked == "paused by an operator"

"""What instances sharing a store agree on: whose turn a scheduled job is, and which runs
belong to an instance that is gone (the in-memory store; MariaDB in tests/faults)."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from syncd.config import Settings
from syncd.model import RunKind, RunTrigger
from syncd.store.memory import MemoryStore
from syncd.sync.cluster import Heartbeat, take_turn
from tests.unit.fakes import CONFIG


class Host:
    """What the heartbeat needs of its daemon."""

    def __init__(self, instance_id: str, lease: float) -> None:
        text = CONFIG.format(winner="crm") + f"\n[daemon]\nlease_seconds = {lease}\n"
        self.settings = Settings(**tomllib.loads(text))
        self.instance_id = instance_id

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(coro, name=name)

    async def wait_store(self) -> None:
        return None


async def _store() -> MemoryStore:
    s = MemoryStore()
    await s.open()
    return s


@pytest.mark.parametrize(
    ("last_started", "due"),
    [
        (None, True),  # never ran
        (-1.0, False),  # ran a second ago on another instance
        (-8.9, False),  # still within this interval
        (-9.5, True),  # a tick a little early (timers drift) is the next interval's
        (5.0, False),  # a start up to an interval ahead: another host's clock skew
        (100.0, True),  # far ahead: a clock gone wrong must not stop the schedule
    ],
)
async def test_whose_turn_a_scheduled_job_is(last_started: float | None, due: bool) -> None:
    store = await _store()
    if last_started is not None:
        at = datetime.now(UTC) + timedelta(seconds=last_started)
        await store.set_cursor("schedule:pull:contact", at.isoformat())
    assert await take_turn(store, "pull:contact", 10.0) is due
    if due:  # the start is recorded: the next tick in this interval is not due
        assert not await take_turn(store, "pull:contact", 10.0)


async def test_runs_of_instances_gone_are_closed_and_live_ones_kept() -> None:
    store = await _store()
    gone, alive, me = Host("gone", 0.3), Host("alive", 60), Host("me", 0.3)
    await Heartbeat(gone, store, dict).beat()
    runs = {}
    for owner in ("gone", "alive", "never-beat"):
        runs[owner] = await store.start_run(RunKind.PULL, RunTrigger.SCHEDULE, owner=owner)
    runs["me-before"] = await store.start_run(RunKind.FLUSH, RunTrigger.SIZE, owner="me")
    await asyncio.sleep(0.01)
    mine = Heartbeat(me, store, dict)
    runs["me-now"] = await store.start_run(RunKind.FLUSH, RunTrigger.SIZE, owner="me")
    await Heartbeat(alive, store, dict).beat()
    await mine.beat()
    # At once: only this instance's run from a previous life (a fixed instance id).
    assert await mine.close_orphan_runs() == 1
    await asyncio.sleep(0.4)  # longer than "gone"'s lease: its heartbeat is old
    await Heartbeat(alive, store, dict).beat()
    assert await mine.close_orphan_runs() == 2  # gone's, and never-beat's (older than that)
    status = {k: (await store.get_run(v)).status for k, v in runs.items()}  # type: ignore[union-attr]
    assert status == {
        "gone": "interrupted",
        "never-beat": "interrupted",
        "me-before": "interrupted",
        "alive": "running",
        "me-now": "running",
    }
    run = await store.get_run(runs["gone"])
    assert run is not None and run.error is not None and "(gone) went away" in run.error

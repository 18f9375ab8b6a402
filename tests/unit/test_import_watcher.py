"""ImportWatcher's looks at ActiveCampaign imports, against a fake import/info."""

from __future__ import annotations

import asyncio
from typing import Any

from syncd.vendors.activecampaign.imports import ImportWatcher


class FakeInfo:
    """import/info for imports that end when the test says; counts looks and overlap."""

    def __init__(self, round_trip: float = 0.001) -> None:
        self.round_trip = round_trip
        self.ended: set[str] = set()
        self.looks: list[str] = []
        self.running = 0
        self.most = 0
        self.looked = asyncio.Condition()

    async def __call__(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        batch = kw["params"]["batchId"]
        self.looks.append(batch)
        async with self.looked:
            self.looked.notify_all()
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(self.round_trip)
        finally:
            self.running -= 1
        if batch in self.ended:
            return {"status": "completed", "success": [batch], "failure": []}
        return {"status": "active"}


async def test_an_import_ended_at_its_first_look_does_not_lengthen_the_next_wait() -> None:
    """The time measured to a first look that finds an import ended includes the wait for
    that look (here a slow answer): learned as it is, each wait would make the next one
    longer, and with many imports in flight their write slots stayed taken after they
    ended."""
    info = FakeInfo(round_trip=0.2)
    w = ImportWatcher(info, poll_interval=0.01, timeout=10)
    w.typical = 0.05
    info.ended.add("b1")  # ended at once
    outcome = await w.wait("b1")
    assert outcome.status == "completed" and info.looks == ["b1"]
    # measured ~0.245 s; averaged in, the next first look would come at ~0.1 s
    assert w.typical is not None and w.typical <= 0.05
    await w.close()


async def test_an_import_still_running_at_its_first_look_is_learned_as_measured() -> None:
    info = FakeInfo()
    w = ImportWatcher(info, poll_interval=0.01, timeout=10)
    w.typical = 0.01
    waiting = asyncio.create_task(w.wait("b1"))
    async with info.looked:  # looked at, not ended, looked at again
        await info.looked.wait_for(lambda: len(info.looks) >= 2)
    await asyncio.sleep(0.05)
    info.ended.add("b1")
    assert (await waiting).status == "completed"
    assert w.typical is not None and w.typical > 0.01
    await w.close()


async def test_imports_after_an_ended_one_are_looked_at_together() -> None:
    """Many imports in flight, all ended: one look each, the later ones at the same time
    rather than one round trip after another."""
    info = FakeInfo()
    w = ImportWatcher(info, poll_interval=0.01, timeout=10)
    batches = [f"b{i}" for i in range(6)]
    info.ended.update(batches)
    outcomes = await asyncio.gather(*map(w.wait, batches))
    assert [o.created_ids for o in outcomes] == [(b,) for b in batches]
    assert sorted(info.looks) == sorted(batches)  # one look each
    assert info.most > 1
    await w.close()

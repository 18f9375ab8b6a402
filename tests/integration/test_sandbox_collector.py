"""The simulators' collector helper: growing data leaves the collector's full passes."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from syncd.sandbox.common import keep_data_out_of_collector


@pytest.mark.parametrize("threshold", [700, 100_000])  # Python's default, the daemon's
async def test_survivors_are_frozen_soon_and_an_idle_process_is_left_alone(threshold: int) -> None:
    saved = gc.get_threshold()
    gc.set_threshold(threshold, *saved[1:])
    gc.collect()
    gc.unfreeze()
    passes: list[int] = []

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] >= 1:
            passes.append(info["generation"])

    task = asyncio.create_task(keep_data_out_of_collector(every=0.01))
    try:
        await asyncio.sleep(0.05)
        kept = [[i] for i in range(20_000)]  # long-lived containers, as imported contacts
        await asyncio.sleep(0.05)
        assert gc.get_freeze_count() >= len(kept)
        # Nothing allocated meanwhile: of ten intervals, hardly any makes a pass.
        gc.collect(1)
        gc.callbacks.append(count)
        await asyncio.sleep(0.1)
        assert len(passes) <= 2, passes
    finally:
        if count in gc.callbacks:
            gc.callbacks.remove(count)
        task.cancel()
        gc.unfreeze()
        gc.set_threshold(*saved)

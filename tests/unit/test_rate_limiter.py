"""The client-side sliding window, on a clock the test moves (no real waiting)."""

from __future__ import annotations

import asyncio

import pytest

from syncd.vendors import http
from syncd.vendors.http import RateLimiter

_yield = asyncio.sleep  # the real one: the fixture replaces asyncio.sleep for the test


class Clock:
    """time.monotonic for the limiter; sleeping moves it forward instead of waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        await _yield(0)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(http.time, "monotonic", c.monotonic)
    monkeypatch.setattr(http.asyncio, "sleep", c.sleep)
    return c


async def _at(clock: Clock, lim: RateLimiter) -> float:
    """When an acquire() started now is granted, on the test's clock."""
    await lim.acquire()
    return clock.now


async def test_a_full_window_waits_for_its_oldest_request(clock: Clock) -> None:
    lim = RateLimiter(2, 60.0)
    assert await _at(clock, lim) == 1000.0
    clock.now += 10
    assert await _at(clock, lim) == 1010.0
    assert await _at(clock, lim) == 1060.0  # the first left the window
    assert await _at(clock, lim) == 1070.0


async def test_a_held_request_counts_from_when_it_ended(clock: Clock) -> None:
    """The server counts an import from its arrival, which waited behind the request rate:
    the window's next slot opens one period after the request ended, not began."""
    lim = RateLimiter(2, 60.0)
    async with lim.held():
        clock.now += 3  # waited behind other limits, then sent and answered
    async with lim.held():
        pass
    assert await _at(clock, lim) == 1063.0  # counted from the start: 1060


async def test_a_request_held_longer_than_the_window_keeps_its_slot(clock: Clock) -> None:
    """An import whose call retries for longer than the window still counts until it
    ends (its arrival may be that late): nobody takes its slot meanwhile."""
    lim = RateLimiter(1, 60.0)
    async with lim.held():
        other = asyncio.create_task(_at(clock, lim))
        clock.now += 90
        for _ in range(3):
            await _yield(0)
        assert not other.done()
    assert await other == 1150.0  # one period after the held request ended (1090)


async def test_held_and_plain_requests_share_the_window(clock: Clock) -> None:
    lim = RateLimiter(2, 60.0)
    await lim.acquire()  # 1000
    async with lim.held():
        clock.now += 5
    # full: 1000 and 1005; the next slot opens when 1000 leaves the window
    assert await _at(clock, lim) == 1060.0
    assert await _at(clock, lim) == 1065.0

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


async def test_a_full_window_waits_for_its_oldest_request(clock: Clock) -> None:
    lim = RateLimiter(2, 60.0)
    assert await lim.acquire() == 1000.0
    clock.now += 10
    assert await lim.acquire() == 1010.0
    assert await lim.acquire() == 1060.0  # the first left the window
    assert await lim.acquire() == 1070.0


async def test_a_held_request_counts_from_when_it_ended(clock: Clock) -> None:
    """The server counts an import from its arrival, which waited behind the request rate:
    the window's next slot opens one period after the request ended, not began."""
    lim = RateLimiter(2, 60.0)
    async with lim.held():
        clock.now += 3  # waited behind other limits, then sent and answered
    async with lim.held():
        pass
    assert await lim.acquire() == 1063.0  # acquire() alone would have said 1060


async def test_a_held_request_longer_than_the_window_still_counts_once(clock: Clock) -> None:
    lim = RateLimiter(1, 60.0)
    async with lim.held():
        clock.now += 90
        other = asyncio.create_task(lim.acquire())  # the slot left the window meanwhile
        assert await other == 1090.0
    assert await lim.acquire() == 1150.0  # one period after the later of the two

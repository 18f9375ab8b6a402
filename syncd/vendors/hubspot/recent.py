"""Records this connector wrote lately, by match value: what HubSpot's search may not show yet.

Companies are matched by searching on domain, then name. HubSpot's search finds a record
seconds after its create and a change up to about a minute later (the Search API is
eventually consistent: https://blog.sequin.io/building-a-sync-on-hubspots-api/), so a
company syncd created a moment ago is not found by the next batch that needs it, and would
be created twice. The connector remembers, for a while, the ids it wrote under each match
value; a value search does not find is looked up here, and the id is confirmed by a batch
read (reads by id are immediate). Only this process's writes are known: a second instance
creating the same company in the same seconds is not covered.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

Key = tuple[str, str, str]  # (object, property, match value)
REMEMBER_SECONDS = 300.0  # well past the search lag HubSpot shows (about a minute)
MAX_ENTRIES = 50_000


class RecentWrites:
    """Match value -> record id, for the records written in the last `ttl` seconds."""

    def __init__(
        self,
        ttl: float = REMEMBER_SECONDS,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._ids: OrderedDict[Key, tuple[str, float]] = OrderedDict()

    def remember(self, hs_obj: str, prop: str, pairs: Iterable[tuple[str, str]]) -> None:
        """Note (match value, record id) pairs just written."""
        until = self._clock() + self._ttl
        for value, rid in pairs:
            key = (hs_obj, prop, value)
            self._ids.pop(key, None)
            self._ids[key] = (rid, until)
        while len(self._ids) > self._max:
            self._ids.popitem(last=False)

    def ids(self, hs_obj: str, prop: str, values: Iterable[str]) -> dict[str, str]:
        """The remembered ids of those values (expired ones are forgotten)."""
        now = self._clock()
        out: dict[str, str] = {}
        for value in values:
            key = (hs_obj, prop, value)
            hit = self._ids.get(key)
            if hit is None:
                continue
            rid, until = hit
            if until < now:
                del self._ids[key]
            else:
                out[value] = rid
        return out

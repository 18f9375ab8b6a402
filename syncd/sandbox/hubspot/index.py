"""The HubSpot simulator's search index: a write is searchable only some seconds later.

HubSpot's CRM search reads an index fed asynchronously from the record store: a created
record is found by ``/crm/v3/objects/{object}/search`` seconds after the create, an updated
one answers with its old values (and old ``lastmodifieddate``) for up to about a minute,
while reads by id and batch reads see the write at once. Sources: "The Search API is
eventually consistent" (https://blog.sequin.io/building-a-sync-on-hubspots-api/); "changes
made by other API calls will take several seconds to propagate to the search indexing"
(https://docs.locoia.com/connectors/connectors/hubspot); /work/shared/API-FACTS.md.

An update (or archive) becomes visible `lag` seconds after it was made, a create in a fifth
of that ("seconds" against "up to about a minute"), version by version: between two quick
updates the index shows the first one, then the second. So search can show a record created
after another record's update before that update: what a poll resuming at the newest change
it saw must survive. Records whose latest version is indexed are read in place; only
records with a write in flight cost a copy.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import time
from collections import Counter
from collections.abc import Iterable, Iterator

from syncd.sandbox.hubspot.objects import HsObject

Key = tuple[str, str]  # (object type, record id)
CREATE_SHARE = 0.2  # a create is indexed in this share of an update's lag


def _copy(rec: HsObject) -> HsObject:
    return dataclasses.replace(rec, properties=dict(rec.properties))


class SearchIndex:
    """What search sees; `lag` seconds (0: instantly consistent) behind the records."""

    def __init__(self, lag: float) -> None:
        self.lag = lag
        # Records whose latest write is not indexed yet -> the version search still sees
        # (None: not in the index at all, as a record just created).
        self._stale: dict[Key, HsObject | None] = {}
        self._pending: list[tuple[float, int, Key, HsObject]] = []  # a heap, soonest first
        self._order = itertools.count()
        self._in_flight: Counter[Key] = Counter()

    def set_lag(self, lag: float) -> None:
        """Change the lag; 0 indexes everything in flight at once."""
        self.lag = lag
        if lag <= 0:
            self.settle()

    def before_write(self, obj: str, rid: str, rec: HsObject | None) -> None:
        """Call before a record is created (`rec` None) or changed: keep what search sees."""
        if self.lag <= 0:
            return
        self._catch_up()
        key = (obj, rid)
        if key not in self._stale:
            self._stale[key] = None if rec is None else _copy(rec)

    def after_write(self, obj: str, rec: HsObject, *, created: bool = False) -> None:
        """Call after the write: its version is indexed `lag` seconds from now (a create's
        sooner)."""
        if self.lag <= 0:
            return
        key = (obj, rec.id)
        due = time.monotonic() + self.lag * (CREATE_SHARE if created else 1.0)
        heapq.heappush(self._pending, (due, next(self._order), key, _copy(rec)))
        self._in_flight[key] += 1

    def settle(self) -> None:
        """Index every write in flight now (seeding: data loaded "long ago")."""
        self._pending.clear()
        self._stale.clear()
        self._in_flight.clear()

    def searchable(self, obj: str, records: Iterable[HsObject]) -> Iterator[HsObject]:
        """The live (not archived) records as the index sees them."""
        self._catch_up()
        stale = self._stale
        if not stale:
            yield from (r for r in records if not r.archived)
            return
        for rec in records:
            seen = stale.get((obj, rec.id), rec)
            if seen is not None and not seen.archived:
                yield seen

    def _catch_up(self) -> None:
        now = time.monotonic()
        pending = self._pending
        while pending and pending[0][0] <= now:
            _, _, key, version = heapq.heappop(pending)
            self._in_flight[key] -= 1
            if self._in_flight[key] <= 0:
                del self._in_flight[key]
                self._stale.pop(key, None)  # the live record is what search sees now
            else:
                self._stale[key] = version

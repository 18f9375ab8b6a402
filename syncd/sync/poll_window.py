"""The polling fallback's overlap: re-read the last seconds before the cursor, once each.

A hub whose change search is eventually consistent (HubSpot's finds a write seconds to
about a minute late) shows a poll only what was indexed when it ran; a record changed
before the cursor but indexed after the poll is behind the next poll's start and would be
skipped for good. So each poll starts `overlap` seconds before its cursor, and skips the
records it already took: the ones whose (id, modification time) it remembers. What it
remembers is kept beside the cursor, only for the window, so any instance that polls next
skips them too; past `MAX_SEEN` the oldest are forgotten and may be submitted again, which
costs a redundant change, never a lost one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from syncd.model import Record

MAX_SEEN = 2000  # keeps the stored set small (a cursor is a text value)


def _stamp(rec: Record) -> int | None:
    return None if rec.modified_at is None else int(rec.modified_at.timestamp() * 1000)


@dataclass(frozen=True)
class Seen:
    """Records already taken in the window: record id -> modification time (epoch ms)."""

    stamps: Mapping[str, int]

    @classmethod
    def decode(cls, raw: str | None) -> Seen:
        """The set as stored; an unreadable value is an empty set (re-reads, never skips)."""
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        return cls({str(k): v for k, v in data.items() if isinstance(v, int)})

    def encode(self) -> str:
        """The set as stored beside the cursor."""
        return json.dumps(self.stamps, separators=(",", ":"), sort_keys=True)

    def fresh(self, records: Iterable[Record]) -> list[Record]:
        """The records not taken yet (a record with no modification time always is)."""
        out = []
        for rec in records:
            stamp, taken = _stamp(rec), self.stamps.get(rec.id)
            if stamp is None or taken is None or stamp > taken:
                out.append(rec)
        return out

    def add(self, records: Iterable[Record], overlap: float) -> Seen:
        """The set with `records` taken, keeping only what the next window can re-read."""
        stamps = dict(self.stamps)
        for rec in records:
            stamp = _stamp(rec)
            if stamp is not None:
                stamps[rec.id] = max(stamp, stamps.get(rec.id, stamp))
        if not stamps:
            return Seen({})
        horizon = max(stamps.values()) - int(overlap * 1000)
        kept = sorted(
            ((rid, ms) for rid, ms in stamps.items() if ms >= horizon),
            key=lambda item: item[1],
        )[-MAX_SEEN:]
        return Seen(dict(kept))

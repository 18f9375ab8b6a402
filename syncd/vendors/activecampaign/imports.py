"""Waiting for ActiveCampaign bulk imports, and learning which contact each row became.

AC processes an import in the background (seconds, more under load) and reports through
``GET /import/info?batchId=`` (https://developers.activecampaign.com/reference/bulk-import-status-info):
``status`` is ``false`` for up to a second after queueing, then ``waiting``, ``claimed``,
``active`` and finally ``completed``, ``failed`` or ``interrupted`` (the last two are never
retried by AC). ``success`` lists the ids of the contacts the import *created*, in no
promised order; updated contacts are not listed; ``failure`` lists rejected emails.

`ImportWatcher` polls for every import of a connector with one task, oldest import first,
so many imports in flight cost one ``import/info`` call per poll interval, not one each
(they share AC's 5 requests a second with everything else). It learns how long imports
take and first looks at one shortly before that: about two looks per import instead of one
every interval (at AC's 5 s, polling every 0.5 s spent 2 of the 5 requests a second). An
import found ended at its first look took less than measured (the wait for the look is in
the measure), so it can only shorten the next wait; once the oldest import ended, the next
ones already due are looked at together.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from syncd.vendors.activecampaign.answers import PAGE

# Final statuses; "failed" and "interrupted" are never retried by AC.
ENDED = ("completed", "failed", "interrupted")
# Imports after an ended one looked at together (at most; only those due).
FOLLOWERS = 8
Call = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    """How an import ended: its status (None: it did not end in time), the ids of the
    contacts it created and the (lower-cased) emails it rejected."""

    status: str | None
    created_ids: tuple[str, ...] = ()
    rejected: frozenset[str] = frozenset()


def outcome_of(info: Any) -> ImportOutcome | None:
    """An ended import's outcome from an ``import/info`` body; None while it runs."""
    if not isinstance(info, dict):
        return None
    status = info.get("status")
    if not isinstance(status, str) or status.lower() not in ENDED:
        return None  # false (no status yet), waiting, claimed, active
    return ImportOutcome(
        status.lower(),
        tuple(str(x) for x in info.get("success") or ()),
        frozenset(str(e).strip().lower() for e in info.get("failure") or ()),
    )


class ImportWatcher:
    """Waits for the connector's imports with one polling task (see the module doc)."""

    def __init__(self, call: Call, *, poll_interval: float, timeout: float) -> None:
        self._call = call
        self.poll_interval = poll_interval
        self.timeout = timeout
        # Oldest first (dicts keep insertion order): batch id -> (when it was sent,
        # deadline, its waiter).
        self._waiting: dict[str, tuple[float, float, asyncio.Future[ImportOutcome]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.typical: float | None = None  # seconds from sending to ended (moving average)
        self._looked: dict[str, float] = {}  # batch id -> when it was last looked at

    async def wait(self, batch_id: str) -> ImportOutcome:
        """The import's outcome once it ended; status None after `timeout` seconds."""
        fut: asyncio.Future[ImportOutcome] = asyncio.get_running_loop().create_future()
        now = time.monotonic()
        self._waiting[batch_id] = (now, now + self.timeout, fut)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name="ac-import-watcher")
        try:
            return await fut
        finally:
            self._waiting.pop(batch_id, None)
            self._looked.pop(batch_id, None)

    async def close(self) -> None:
        """Stop polling (waiters still waiting are cancelled)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for *_, fut in self._waiting.values():
            fut.cancel()
        self._waiting.clear()
        self._looked.clear()

    async def _poll(self) -> None:
        # Until it has seen an import end, the watcher looks at once and then every
        # interval (AC gives a batch no status for up to a second: an early look says false).
        try:
            while self._waiting:
                batch_id, (sent, _, fut) = next(iter(self._waiting.items()))
                if fut.done():  # its waiter was cancelled
                    self._waiting.pop(batch_id, None)
                    continue
                wait = self._due(batch_id, sent) - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                if not await self._look(batch_id):
                    continue
                # The oldest ended: AC works through imports in order, so those sent after
                # it that are due have likely ended too. Looked at together they cost the
                # same calls as one by one, without waiting for a round trip each in turn.
                now = time.monotonic()
                followers = [
                    b
                    for b, (s, _, f) in itertools.islice(self._waiting.items(), FOLLOWERS)
                    if not f.done() and self._due(b, s) <= now
                ]
                if followers:
                    await asyncio.gather(*map(self._look, followers))
        except Exception as exc:  # the call's own retries are spent: every waiter hears it
            for *_, other in self._waiting.values():
                if not other.done():
                    other.set_exception(exc)
            self._waiting.clear()

    def _due(self, batch_id: str, sent: float) -> float:
        """When an import is worth a (first or next) look."""
        due = sent + 0.9 * self.typical if self.typical is not None else 0.0
        last = self._looked.get(batch_id)
        return due if last is None else max(due, last + self.poll_interval)

    async def _look(self, batch_id: str) -> bool:
        """One ``import/info`` read; whether the import's waiter has its outcome now."""
        first_look = batch_id not in self._looked
        self._looked[batch_id] = time.monotonic()
        info = await self._call(
            "GET", "/import/info", endpoint="import.info", params={"batchId": batch_id}
        )
        entry = self._waiting.get(batch_id)
        if entry is None:  # its waiter gave up meanwhile
            return True
        sent, deadline, fut = entry
        now = time.monotonic()
        ended = outcome_of(info)
        if ended is not None:
            self._learn(now - sent, first_look)
        elif now >= deadline:
            ended = ImportOutcome(None)
        if ended is None:
            return False
        self._waiting.pop(batch_id, None)
        if not fut.done():
            fut.set_result(ended)
        return True

    def _learn(self, took: float, first_look: bool) -> None:
        """Update how long imports take from one that ended `took` seconds after it was sent."""
        if self.typical is None:
            self.typical = took
        elif first_look:
            # Ended before the first look: it took less than `took`, which counts the wait
            # for that look. Averaged in, the wait fed the next wait: with many imports in
            # flight each was looked at later than the last, and kept its write slot after
            # it ended (a 1M-row dbsync waited on those slots 96 % of its time). Only a
            # shorter time is learned here; a look that finds an import still running
            # measures it to within a poll interval, and that is averaged in below.
            self.typical = min(self.typical, took)
        else:
            self.typical = 0.7 * self.typical + 0.3 * took


async def contact_ids_by_email(call: Call, ids: Sequence[str]) -> dict[str, str]:
    """Lower-cased email -> id of the given contacts, 100 per ``GET /contacts?ids[]=``."""
    out: dict[str, str] = {}
    for start in range(0, len(ids), PAGE):
        chunk = ids[start : start + PAGE]
        params = [("ids[]", i) for i in chunk] + [("limit", str(PAGE))]
        body = await call("GET", "/contacts", endpoint="contacts.list", params=params)
        for row in body.get("contacts") or ():
            out[str(row.get("email", "")).strip().lower()] = str(row["id"])
    return out


# How far before an import was sent the read of the contacts it updated starts: room for the
# difference between this clock and AC's (the filter compares with AC's own udate).
CLOCK_MARGIN = timedelta(minutes=2)


async def ids_of_updated(call: Call, emails: Collection[str], sent: datetime) -> dict[str, str]:
    """Lower-cased email -> id of the contacts among `emails` an import sent at `sent`
    updated: the contacts AC changed since then, 100 a call (``filters[updated_after]``),
    instead of one ``GET /contacts?email=`` each. Stops when all are found or after about
    twice the pages they need (others' changes share the window); the caller looks the rest
    up one by one."""
    wanted = {e.lower() for e in emails}
    out: dict[str, str] = {}
    since = (sent - CLOCK_MARGIN).isoformat(timespec="seconds")
    pages = 2 * -(-len(wanted) // PAGE) + 2
    after = 0
    while pages > 0 and len(out) < len(wanted):
        pages -= 1
        rows = await changed_contacts(call, after, since)
        for row in rows:
            email = str(row.get("email", "")).strip().lower()
            if email in wanted:
                out[email] = str(row["id"])
        if len(rows) < PAGE:
            break
        after = int(rows[-1]["id"])
    return out


async def changed_contacts(
    call: Call, after: int, since: str | None, *, deleted: bool = False
) -> list[dict[str, Any]]:
    """One page (100) of contacts with ids above `after`, in id order, changed since
    `since` (AC's ``filters[updated_after]``) when given: the read behind a pull's pages,
    its deletion check and the ids of contacts an import updated."""
    params = [("orders[id]", "ASC"), ("limit", str(PAGE)), ("id_greater", str(after))]
    if since:
        params.append(("filters[updated_after]", since))
    if deleted:
        params.append(("filters[deleted]", "1"))  # (unverified) how AC lists deleted ones
    body = await call("GET", "/contacts", endpoint="contacts.list", params=params)
    return list(body.get("contacts") or ())


async def contact_id_of(call: Call, email: str) -> str | None:
    """The id of the live contact with this email (``GET /contacts?email=``)."""
    body = await call("GET", "/contacts", endpoint="contacts.by_email", params={"email": email})
    for row in body.get("contacts") or ():
        if str(row.get("email", "")).strip().lower() == email:
            return str(row["id"])
    return None

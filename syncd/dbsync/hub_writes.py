"""The hub half of a dbsync pass: rows waiting to fill a call go out in full calls, a few
calls in flight (`pipeline.IN_FLIGHT`), and what the hub accepted is buffered for the next store
commit with the stamp that says how it got there.

Split from pipeline.py, which reads, looks up and maps the rows these calls carry.
"""

from __future__ import annotations

import asyncio

from syncd.dbsync.pass_state import PRIOR, Pass, Write, chunk_writes
from syncd.dbsync.rows import MappedRow, RowPlan
from syncd.model import ErrorCategory, ObjectType, WriteItem, WriteOp, new_named_tuple
from syncd.store.types import DbsyncRow
from syncd.vendors.protocols import HubConnector


class HubWrites:
    """Starts and answers a pass's hub write calls; `RowPipeline` builds on it."""

    hub: HubConnector

    async def _send(
        self,
        p: Pass,
        plan: RowPlan,
        writers: asyncio.TaskGroup,
        limit: asyncio.Semaphore,
        *,
        final: bool,
    ) -> None:
        """Start hub write calls for the waiting rows; a part-filled call waits for the next
        batch's rows unless this is the end (full calls: no more calls than rows need)."""
        chunks = chunk_writes(p.unsent, p.cfg.batch_size)
        p.unsent = []
        if chunks and not final and len(chunks[-1]) < p.cfg.batch_size:
            p.unsent = chunks.pop()
        for chunk in chunks:
            await limit.acquire()
            writers.create_task(self._write_call(p, plan, chunk, limit))

    async def _write_call(
        self, p: Pass, plan: RowPlan, chunk: list[Write], limit: asyncio.Semaphore
    ) -> None:
        """One hub write call; accepted rows are buffered for the next store commit."""
        try:
            done, created_ids, returned = await self._write(p, plan, chunk)
            emails = [w.row.email for w in chunk]
            if returned:  # before the rows are recorded: a failure here resends them
                await p.fence()
                p.tally.write_calls += 1
                await self.hub.restore_to_list(p.cfg.list, returned)
            # Buffered before leaving inflight, with no await between: never unseen.
            p.record += done
            p.buffered.update(emails)
            p.inflight.difference_update(emails)
            if created_ids and p.cfg.send_last_broadcast:
                await p.fence()
                p.tally.write_calls += 1
                await self.hub.send_last_broadcast(p.cfg.list, created_ids)
        finally:
            limit.release()

    def _dbrow(self, p: Pass, row: MappedRow, hub_id: str | None, digest: str) -> DbsyncRow:
        return new_named_tuple(
            DbsyncRow, (p.cfg.name, row.email, row.email, hub_id, digest, p.run_id, 0)
        )

    async def _write(
        self, p: Pass, plan: RowPlan, chunk: list[Write]
    ) -> tuple[list[DbsyncRow], list[str], list[str]]:
        """One upsert call: the rows to record, the ids of contacts new to the list, and
        of those among them to put back on it (rows back after delete_missing)."""
        done: list[DbsyncRow] = []
        created_ids: list[str] = []
        returned: list[str] = []
        if chunk:
            lists = (plan.list_id,)  # one tuple for the call's items: connectors only read it
            items = [
                new_named_tuple(WriteItem, (self._fields(w.row, lists), w.hub_id)) for w in chunk
            ]
            # Contact ids matter only to send the last broadcast and to put a returning row's
            # contact back on the list; delete_missing looks up those it lacks when a row goes
            # (rarely), which spares ActiveCampaign's reads of every imported contact's id.
            need_ids = p.cfg.send_last_broadcast or any(
                w.kind == "return" and w.hub_id is None for w in chunk
            )
            await p.fence()
            p.tally.write_calls += 1
            results = await self.hub.write(
                ObjectType.CONTACT, WriteOp.UPSERT, items, match_field="email", need_ids=need_ids
            )
            for w, res in zip(chunk, results, strict=True):
                if not res.ok:
                    cols = (plan.email_column, *(c for _, c, _ in plan.fields))
                    p.fail(
                        w.row.key,
                        cols,
                        f"hub rejected the contact: {res.error_message or res.error_code}",
                        res.error_category or ErrorCategory.REJECTED,
                        w.row.email,
                    )
                    continue
                created = w.kind in ("create", "return") or (w.kind == "upsert" and res.created)
                stamp = w.stamp
                if w.kind == "upsert" and not res.created:
                    stamp = PRIOR + stamp  # the hub had the contact before this dbsync
                if created:
                    p.tally.created += 1
                    if res.id:
                        created_ids.append(res.id)
                        if w.kind == "return":
                            returned.append(res.id)
                else:
                    p.tally.updated += 1
                # A contact this call created replaces the stored one (deleted in the hub
                # meanwhile): its id, or none (looked up by email if ever needed), never
                # the old one's.
                hub_id = res.id if res.created else res.id or w.hub_id
                done.append(self._dbrow(p, w.row, hub_id, stamp))
        return done, created_ids, returned

    @staticmethod
    def _fields(row: MappedRow, lists: tuple[str, ...]) -> dict[str, object]:
        out: dict[str, object] = {**row.fields, "lists": lists}
        if row.tags:
            out["tags"] = row.tags
        return out

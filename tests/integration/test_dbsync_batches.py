"""dbsync's batching: duplicates across lookup batches, store commits and hub calls in
flight; unchanged rows recognised by their source fingerprint, also from older hashes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from syncd.dbsync import runner as dbsync_engine
from syncd.dbsync.component import default_source
from syncd.dbsync.pass_state import SOURCE_MARK
from syncd.dbsync.pipeline import IN_FLIGHT
from syncd.dbsync.runner import DbsyncRunner
from syncd.model import ErrorCategory, RunTrigger
from syncd.store.sqlite import SqliteStore
from tests.integration.dbsync_support import Env, env

__all__ = ["env"]


class SlowCommits:
    """The test's store, with dbsync commits that take a while."""

    def __init__(self, inner: SqliteStore, delay: float = 0.3) -> None:
        self._inner = inner
        self._delay = delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def upsert_dbsync_rows(self, *args: Any) -> None:
        await asyncio.sleep(self._delay)
        await self._inner.upsert_dbsync_rows(*args)


ROWS = [
    (1, "ada@example.com", "Ada", "Lovelace", "Analytical", "vip, math"),
    (2, "alan@example.com", "Alan", "Turing", "Bletchley", None),
    (3, "grace@example.com", "Grace", "Hopper", None, "navy"),
]


async def test_first_row_wins_across_lookups_commits_and_calls_in_flight(env: Env) -> None:
    # batch_size 2: a lookup covers 16 rows and a commit ~160, so the later rows of an email
    # meet its first one in flight, buffered or already in the store.
    rows = [(i, f"p{i}@example.com", f"First{i}") for i in range(1, 401)]
    later = {5: 1, 20: 3, 37: 30, 60: 44, 95: 7, 119: 2, 120: 118, 250: 100, 399: 180}
    for key, first in later.items():
        rows[key - 1] = (key, f"  P{first}@Example.com", f"Dup{key}")
    await env.insert(rows)
    report = await env.runner.run(env.cfg(batch_size=2), RunTrigger.MANUAL)
    assert report.status == "succeeded", report.error
    assert (report.counts["created"], report.counts["duplicates"]) == (400 - len(later), 9)
    failures = await env.store.run_failures(report.run_id)
    dups = sorted(int(f.key) for f in failures if f.category is ErrorCategory.DUPLICATE)
    assert dups == sorted(later)
    for first in set(later.values()):
        email = f"p{first}@example.com"
        assert env.copies(email) == 1
        assert env.contact(email).first_name == f"First{first}"  # type: ignore[union-attr]
    assert await env.store.count_dbsync_rows("people") == 400 - len(later)
    env.sb.reset()
    again = await env.runner.run(env.cfg(batch_size=2), RunTrigger.MANUAL)
    assert (again.counts["unchanged"], again.counts["duplicates"]) == (391, 9)
    assert env.write_requests() == 0


async def test_duplicates_next_to_every_commit_boundary_are_caught(env: Env) -> None:
    # A slice's store lookup is issued while the slices before it are still being mapped,
    # and store commits run in the background (slowly here); the first row of every 16-row
    # lookup slice repeats an email 40 rows back (its write call long answered), so
    # whichever slices a commit falls between, a duplicate meets its first row in a commit
    # its lookup may not show yet: rows written by the run (new in the first run, all
    # changed in the second) as well as stored rows it met unchanged (third run).
    rows = [(i, f"p{i}@example.com", f"First{i}") for i in range(1, 481)]
    later = {k: k - 40 for k in range(49, 481, 16)}
    for key, first in later.items():
        rows[key - 1] = (key, f"P{first}@example.com ", f"Dup{key}")
    await env.insert(rows)
    runner = DbsyncRunner(SlowCommits(env.store, 0.05), env.hub, default_source, owner="test")
    expected = {"created": 480 - len(later)}
    for run in range(3):
        if run == 1:
            await env.sql("UPDATE people SET first_name = CONCAT('New', first_name)")
            expected = {"updated": 480 - len(later)}
        env.sb.reset()
        report = await runner.run(env.cfg(batch_size=2), RunTrigger.MANUAL)
        assert report.status == "succeeded", report.error
        assert report.counts["duplicates"] == len(later)
        if run == 2:
            expected = {"unchanged": 480 - len(later)}
            assert env.write_requests() == 0
        assert {k: report.counts[k] for k in expected} == expected
    for first in later.values():
        assert env.contact(f"p{first}@example.com").first_name == f"NewFirst{first}"  # type: ignore[union-attr]


async def test_hashes_without_source_fingerprint_are_completed_without_calls(env: Env) -> None:
    await env.insert(ROWS)
    await env.runner.run(env.cfg(), RunTrigger.MANUAL)
    stored = await env.store.dbsync_rows("people", [r[1] for r in ROWS])
    assert all(SOURCE_MARK in r.content_hash for r in stored.values())
    # As an earlier syncd left them: the hash of what was sent only.
    await env.store.upsert_dbsync_rows(
        [
            type(r)(r.dbsync, r.row_key, r.email, r.hub_id, r.content_hash.split("/")[0], r.run_id)
            for r in stored.values()
        ]
    )
    env.sb.reset()
    report = await env.runner.run(env.cfg(), RunTrigger.MANUAL)
    assert report.counts["unchanged"] == 3 and env.write_requests() == 0
    assert await env.store.dbsync_rows("people", [r[1] for r in ROWS]) == {
        e: r._replace(run_id=report.run_id) for e, r in stored.items()
    }


async def test_source_change_that_maps_the_same_costs_no_call(env: Env) -> None:
    await env.insert(ROWS)
    await env.runner.run(env.cfg(), RunTrigger.MANUAL)
    before = (await env.store.dbsync_rows("people", ["grace@example.com"]))["grace@example.com"]
    await env.sql("UPDATE people SET tag_list = ' navy ;' WHERE id = 3")
    env.sb.reset()
    report = await env.runner.run(env.cfg(), RunTrigger.MANUAL)
    assert report.counts["unchanged"] == 3 and env.write_requests() == 0
    after = (await env.store.dbsync_rows("people", ["grace@example.com"]))["grace@example.com"]
    sent_before, _, source_before = before.content_hash.partition(SOURCE_MARK)
    sent_after, _, source_after = after.content_hash.partition(SOURCE_MARK)
    assert sent_after == sent_before and source_after != source_before
    # A real change still goes out.
    await env.sql("UPDATE people SET tag_list = 'navy, retired' WHERE id = 3")
    report = await env.runner.run(env.cfg(), RunTrigger.MANUAL)
    assert (report.counts["updated"], report.counts["unchanged"]) == (1, 2)
    assert env.tags("grace@example.com") == {"navy", "retired"}


async def test_rows_keyed_by_a_column_other_than_the_primary_key(env: Env) -> None:
    # A key column that is not the primary key is read through an ordered cursor, where
    # syncd fingerprints the rows itself: unchanged rows still cost nothing, changes show.
    rows = [(i, f"k{i}@example.com", f"First{i}", None, None, None, 1000 - i) for i in range(1, 31)]
    await env.insert(rows)
    first = await env.runner.run(env.cfg(key_column="score"), RunTrigger.MANUAL)
    assert first.status == "succeeded", first.error
    assert first.counts["created"] == 30
    env.sb.reset()
    again = await env.runner.run(env.cfg(key_column="score"), RunTrigger.MANUAL)
    assert again.counts["unchanged"] == 30 and env.write_requests() == 0
    await env.sql("UPDATE people SET first_name = 'Changed' WHERE id = 7")
    env.sb.reset()
    third = await env.runner.run(env.cfg(key_column="score"), RunTrigger.MANUAL)
    assert (third.counts["unchanged"], third.counts["updated"]) == (29, 1)
    assert env.contact("k7@example.com").first_name == "Changed"  # type: ignore[union-attr]


async def test_a_pass_that_fails_half_way_keeps_what_the_hub_accepted(env: Env) -> None:
    # Commits run in the background; when the hub stops accepting (auth revoked) the pass
    # fails, and every contact the hub confirmed before that is recorded all the same, so
    # the next run resends nothing it already wrote.
    rows = [(i, f"h{i}@example.com", f"First{i}") for i in range(1, 801)]
    await env.insert(rows)
    insert_contact = env.sb.insert_contact

    def revoking_after_300(*args: Any, **kwargs: Any) -> Any:
        contact = insert_contact(*args, **kwargs)
        if len(env.sb.contacts) >= 300:
            env.sb.faults.revoke_auth = True
        return contact

    env.sb.insert_contact = revoking_after_300  # type: ignore[method-assign]
    # Commits slow enough that one is still under way when the hub starts refusing.
    runner = DbsyncRunner(SlowCommits(env.store), env.hub, default_source, owner="test")
    failed = await runner.run(env.cfg(batch_size=2), RunTrigger.MANUAL)
    assert failed.status == "failed"
    accepted = {c.email.lower() for c in env.sb.contacts.values()}
    emails = [f"h{i}@example.com" for i in range(1, 801)]
    stored = set(await env.store.dbsync_rows("people", emails))
    # Only the other calls in flight when auth went (of 2 rows each) may be in the hub
    # without their confirmation; everything confirmed was recorded.
    unconfirmed = (IN_FLIGHT - 1) * 2
    assert stored <= accepted and len(accepted - stored) <= unconfirmed
    assert len(stored) >= 300 - unconfirmed - 2
    env.sb.insert_contact = insert_contact  # type: ignore[method-assign]
    env.sb.faults.revoke_auth = False
    env.sb.reset()
    again = await env.runner.run(env.cfg(batch_size=2), RunTrigger.MANUAL)
    assert again.status == "succeeded", again.error
    c = again.counts
    assert (c["unchanged"], c["created"] + c["updated"]) == (len(stored), 800 - len(stored))
    assert all(env.copies(e) == 1 for e in emails)


async def test_delete_missing_over_many_pages_removes_exactly_the_missing(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rows a pass met are remembered by store id; the stored rows are then read in small
    # pages (as a big table would be) and only the contacts of those not met are deleted. Rows
    # that are unchanged, changed, invalid now or duplicated all count as still there.
    monkeypatch.setattr(dbsync_engine, "UNSEEN_SCAN", 7)
    rows = [(i, f"m{i}@example.com", f"First{i}") for i in range(1, 201)]
    await env.insert(rows)
    cfg = env.cfg(batch_size=2, delete_missing=True, delete_safety_threshold=0.5)
    assert (await env.runner.run(cfg, RunTrigger.MANUAL)).counts["created"] == 200
    gone = set(range(5, 201, 9))
    await env.sql(f"DELETE FROM people WHERE id IN ({', '.join(map(str, sorted(gone)))})")
    await env.sql("UPDATE people SET first_name = 'Changed' WHERE id IN (3, 30)")
    await env.sql("UPDATE people SET email = 'm1@example.com' WHERE id = 4")  # duplicate of 1
    await env.sql("UPDATE people SET email = 'M6@example.com  ' WHERE id = 6")  # same email
    await env.sql("INSERT INTO people (id, email, first_name) VALUES (300, 'm8@example.com', 'X')")
    await env.sql("UPDATE people SET email = 'broken' WHERE id = 8")  # invalid now, row kept
    predicted = await env.runner.test(cfg)
    report = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert report.status == "succeeded", report.error
    # m4 lost its row (row 4 now carries m1); m8's row 8 is invalid but row 300 has m8.
    missing = {f"m{i}@example.com" for i in gone} | {"m4@example.com"}
    assert report.counts["deleted"] == predicted.counts["deleted"] == len(missing)
    for i in range(1, 201):
        email = f"m{i}@example.com"
        if email in missing:
            assert env.contact(email) is None, email  # deleted (delete_missing_action)
        else:
            assert env.status(email) == 1, email
    assert await env.store.count_dbsync_rows("people") == 200 - len(missing)


async def test_imports_overlap_so_the_hub_latency_does_not_bound_a_run(env: Env) -> None:
    # An AC import takes seconds to process: a run keeps many in flight (up to
    # pipeline.IN_FLIGHT), not one after another, so AC's limits bound it, not its latency.
    rows = [(i, f"o{i}@example.com", f"First{i}") for i in range(1, 1001)]
    await env.insert(rows)
    report = await env.runner.run(env.cfg(batch_size=25), RunTrigger.MANUAL)
    assert report.status == "succeeded" and report.counts["created"] == 1000
    jobs = list(env.sb.imports.values())
    assert len(jobs) == 40
    most = max(sum(1 for o in jobs if o.queued_at <= j.queued_at < o.ready_at) for j in jobs)
    assert 8 <= most <= IN_FLIGHT

"""A dbsync run killed with SIGKILL half-way, then run again: every row's contact exactly once."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from pathlib import Path

from syncd.dbsync.component import default_source
from syncd.dbsync.runner import DbsyncRunner
from syncd.dbsync.types import DbsyncBusy
from syncd.model import RunKind, RunTrigger
from syncd.store.sqlite import SqliteStore
from tests.integration.dbsync_support import LIST_ID, MAPPING, Env, env

__all__ = ["env"]
# Several times the rows of the calls the victim keeps in flight (pipeline.IN_FLIGHT calls of
# 25), so that a kill after the first third lands between waves of imports.
ROWS = 1200
REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from syncd.config import DbsyncSettings
    from syncd.vendors.activecampaign.client import ActiveCampaignConnector
    from syncd.dbsync.component import default_source
    from syncd.dbsync.runner import DbsyncRunner
    from syncd.model import RunTrigger
    from syncd.store.sqlite import SqliteStore
    from tests.integration.dbsync_support import MAPPING, hub_settings

    async def main() -> None:
        store_path, base, dsn = sys.argv[1:4]
        store = SqliteStore(store_path)
        await store.open()
        hub = ActiveCampaignConnector(hub_settings(base), import_poll_interval=0.01)
        cfg = DbsyncSettings(name="people", dsn=dsn, table="people", list="1",
                             mapping=MAPPING, batch_size=25)
        runner = DbsyncRunner(store, hub, default_source, owner="victim", lock_ttl=1.0)
        print("started", flush=True)
        await runner.run(cfg, RunTrigger.MANUAL)
        print("finished", flush=True)

    asyncio.run(main())
    """
)


async def test_killed_run_then_rerun_syncs_every_row_exactly_once(env: Env) -> None:
    await env.insert([(i, f"k{i}@example.com", f"K{i}", "L", f"Co{i}", "t") for i in range(ROWS)])
    env.seed_contact("k7@example.com", "Pre")  # one existed before: must not be duplicated
    before = await env.checksum()
    store_path = env.tmp / "killed.sqlite3"
    script = env.tmp / "victim.py"
    script.write_text(SCRIPT)
    env.sb.faults.latency = 0.01  # slow enough to be caught half-way
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        str(store_path),
        env.base_url,
        env.dsn,
        cwd=str(REPO),
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        for _ in range(3000):
            if len(env.sb.ledger) >= ROWS // 3:
                break
            assert proc.returncode is None, "the victim ended before it could be killed"
            await asyncio.sleep(0.01)
        proc.kill()
    finally:
        await proc.wait()
    imported = len({e.record_id for e in env.sb.ledger if e.object == "contact"})
    assert 0 < imported < ROWS, "the kill did not land half-way"
    env.sb.faults.latency = 0.0

    store = SqliteStore(store_path)
    await store.open()
    try:
        runner = DbsyncRunner(store, env.hub, default_source, owner="rescuer", lock_ttl=5.0)
        cfg = env.cfg(batch_size=25)
        for _ in range(200):  # the victim's lock lease (1 s) has to run out first
            try:
                run_id = await runner.begin(cfg, RunTrigger.MANUAL)
                break
            except DbsyncBusy as busy:
                assert busy.run_id is not None
                await asyncio.sleep(0.05)
        report = await runner.execute(cfg, run_id)
        assert report.status == "succeeded", report.error
        c = report.counts
        assert c["rows_read"] == ROWS and c["failed"] == 0
        assert c["created"] + c["updated"] + c["unchanged"] == ROWS
        runs = await store.list_runs(kind=RunKind.DBSYNC, name="people")
        assert [r.status for r in runs] == ["succeeded", "interrupted"]
        assert runs[1].error is not None and "went away" in runs[1].error
    finally:
        await store.close()
    for i in range(ROWS):
        email = f"k{i}@example.com"
        assert env.copies(email) == 1, email
        assert env.status(email, LIST_ID) == 1, email
        assert env.contact(email).first_name == f"K{i}"  # type: ignore[union-attr]
    assert len(env.sb.contacts) == ROWS
    assert await env.checksum() == before
    assert MAPPING["email"] == "email"

"""dbsync inside a real in-process daemon: the admin API, the CLI, schedules and SIGHUP reload."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from syncd.cli.dbsync import register
from syncd.config import load_settings
from syncd.daemon import Daemon
from syncd.dbsync.component import DbsyncComponent
from syncd.model import RunKind, RunTrigger
from syncd.web.dbsync_api import install
from tests.e2e.daemon import free_port
from tests.integration.dbsync_support import TOKEN, Env, env

__all__ = ["env"]
ADMIN = "dbsync-admin-token-0123456789"


def write_config(
    env: Env, path: Path, port: int, schedule: str = "manual", extra: str = ""
) -> None:
    """A config with the sandbox hub and one dbsync of the people table (`extra`: more
    keys of the dbsync entry)."""
    mapping = ", ".join(
        f'"{k}" = "{v}"' for k, v in {"email": "email", "first_name": "firstName"}.items()
    )
    path.write_text(
        f"""
[daemon]
listen = "127.0.0.1:{port}"
state_dir = "{env.tmp}"
admin_token = "{ADMIN}"
log_format = "console"

[hub]
kind = "activecampaign"
base_url = "{env.base_url}"
api_token = "{TOKEN}"
rate_limit = {{ requests = 10000, per_seconds = 1.0 }}
http = {{ retry_attempts = 2, retry_base_delay = 0.01 }}

[[dbsync]]
name = "people"
dsn = "{env.dsn}"
table = "people"
list = "1"
batch_size = 5
schedule = "{schedule}"
mapping = {{ {mapping} }}
{extra}
"""
    )


class Running:
    """A started in-process daemon and an HTTP session to its admin API."""

    def __init__(self, daemon: Daemon, task: asyncio.Task[int], port: int, config: Path) -> None:
        self.daemon, self.task, self.port, self.config = daemon, task, port, config
        self.http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"})

    @property
    def base(self) -> str:
        """Admin API base URL."""
        return f"http://127.0.0.1:{self.port}"

    async def call(self, method: str, path: str) -> tuple[int, Any]:
        """One admin call: (status, JSON or text)."""
        async with self.http.request(method, self.base + path) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def wait_run(self, run_id: int) -> dict[str, Any]:
        """Poll a run until it is no longer running."""
        for _ in range(2000):
            status, body = await self.call("GET", f"/api/v1/runs/{run_id}")
            assert status == 200, body
            if body["status"] != "running":
                return dict(body)
            await asyncio.sleep(0.02)
        raise AssertionError(f"run {run_id} did not end")

    def cli(self, *argv: str) -> int:
        """Run ``syncd dbsync …`` (blocking; call from a thread)."""
        p = argparse.ArgumentParser(prog="syncd")
        sub = p.add_subparsers(dest="command", required=True)

        def add(name: str, fn: Any, help_: str) -> argparse.ArgumentParser:
            sp = sub.add_parser(name, help=help_)
            sp.add_argument("--config")
            sp.set_defaults(func=fn)
            return sp

        register(sub, add)
        args = p.parse_args(["dbsync", *argv, "--config", str(self.config)])
        return int(args.func(args))


@pytest.fixture
async def running(env: Env) -> AsyncIterator[Running]:
    """The daemon with only the dbsync component and routes."""
    async with started(env, "every 1s") as r:
        yield r


@contextlib.asynccontextmanager
async def started(env: Env, schedule: str, extra: str = "") -> AsyncIterator[Running]:
    """The daemon with only the dbsync component and routes, until the block ends."""
    port = free_port()
    config = env.tmp / "syncd.toml"
    write_config(env, config, port, schedule=schedule, extra=extra)
    settings = load_settings(config)
    daemon = Daemon(
        settings,
        config,
        components=[lambda d: DbsyncComponent(d, d.store, lock_ttl=5.0)],
        installers=[install],
    )
    task = asyncio.get_running_loop().create_task(daemon.run())
    for _ in range(500):
        if daemon.accepting:
            break
        assert not task.done(), task.result()
        await asyncio.sleep(0.01)
    await asyncio.wait_for(daemon.wait_store(), 30)
    r = Running(daemon, task, port, config)
    try:
        yield r
    finally:
        await r.http.close()
        daemon.request_stop()
        with contextlib.suppress(asyncio.CancelledError):
            assert await asyncio.wait_for(task, 30) == 0


async def test_api_test_run_busy_report_and_csv(env: Env, running: Running) -> None:
    await env.insert([(i, f"a{i}@example.com", f"A{i}") for i in range(1, 31)])
    await env.insert([(99, "broken@", "Broken,=cmd")])
    (comp,) = running.daemon.started_components
    assert isinstance(comp, DbsyncComponent)
    # A schedule fired (every 1s) or will: wait for that run, then switch schedules off.
    running.config.write_text(running.config.read_text().replace("every 1s", "manual"))
    for _ in range(500):
        scheduled = [
            r
            for r in await running.daemon.store.list_runs(kind=RunKind.DBSYNC, name="people")
            if r.trigger is RunTrigger.SCHEDULE
        ]
        if scheduled and scheduled[0].status != "running":
            break
        await asyncio.sleep(0.02)
    assert scheduled and scheduled[0].counts["created"] == 30
    os.kill(os.getpid(), signal.SIGHUP)
    for _ in range(500):
        if not any(j.id.startswith("dbsync:") for j in running.daemon.scheduler.get_jobs()):
            break
        await asyncio.sleep(0.01)
    assert not any(j.id.startswith("dbsync:") for j in running.daemon.scheduler.get_jobs())

    status, body = await running.call("POST", "/api/v1/dbsyncs/nope/test")
    assert status == 404 and "nope" in body["error"]
    status, body = await running.call("POST", "/api/v1/dbsyncs/nope/run")
    assert status == 404
    await env.sql("UPDATE people SET first_name = CONCAT(first_name, '!') WHERE id <= 10")
    env.sb.reset()
    status, started = await running.call("POST", "/api/v1/dbsyncs/people/test")
    assert status == 202 and started["mode"] == "test", started
    body = await running.wait_run(started["run_id"])
    assert body["kind"] == "dbsync_test" and body["status"] == "succeeded", body
    assert (body["counts"]["updated"], body["counts"]["skipped"], body["counts"]["failed"]) == (
        10,
        20,
        1,
    )
    assert body["failures"][0]["key"] == "99" and env.write_requests() == 0
    assert body["counts"]["api_calls"] <= 1  # no call per row
    status, listing = await running.call("GET", "/api/v1/dbsyncs")
    assert listing["dbsyncs"][0]["last_test"]["id"] == started["run_id"]
    status, cost = await running.call("GET", "/api/v1/dbsyncs/people/lookup-cost")
    # At most every matching row (31); the test itself looks up only rows new to it.
    assert status == 200 and cost["rows"] == 31 and cost["calls"] == 31, cost
    status, body = await running.call("POST", "/api/v1/dbsyncs/people/test?exact=maybe")
    assert status == 400 and "exact" in body["error"]

    env.sb.faults.latency = 0.05  # keep the run going long enough to be asked twice
    status, body = await running.call("POST", "/api/v1/dbsyncs/people/run")
    assert status == 202, body
    run_id = body["run_id"]
    status, busy = await running.call("POST", "/api/v1/dbsyncs/people/run")
    assert status == 409 and busy["run_id"] == run_id
    status, busy = await running.call("POST", "/api/v1/dbsyncs/people/test")
    assert status == 409 and busy["run_id"] == run_id  # a test reads what a run changes
    status, live = await running.call("GET", f"/api/v1/runs/{run_id}")
    assert status == 200 and live["status"] == "running" and live["progress"] is not None
    done = await running.wait_run(run_id)
    env.sb.faults.latency = 0.0
    assert done["status"] == "succeeded" and done["counts"]["updated"] == 10
    assert done["trigger"] == "manual" and done["finished_at"]
    assert [f["key"] for f in done["failures"]] == ["99"]
    status, csv_text = await running.call("GET", f"/api/v1/runs/{run_id}?format=csv")
    assert status == 200 and csv_text.splitlines()[0] == "key,columns,reason,category,email"
    assert csv_text.splitlines()[1].startswith("99,email,invalid email")
    status, listing = await running.call("GET", "/api/v1/dbsyncs")
    assert status == 200 and listing["dbsyncs"][0]["last_run"]["id"] == run_id
    status, doc = await running.call("GET", "/api/v1/openapi.json")
    assert "/api/v1/dbsyncs/{name}/run" in doc["paths"] and "/api/v1/runs/{id}" in doc["paths"]
    status, _ = await running.call("GET", "/api/v1/runs/999999")
    assert status == 404
    async with (
        aiohttp.ClientSession() as anon,
        anon.post(running.base + "/api/v1/dbsyncs/people/run") as resp,
    ):
        assert resp.status == 401


async def test_cli_list_test_run_report(
    env: Env, running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    running.daemon.scheduler.remove_all_jobs()
    await env.insert([(i, f"c{i}@example.com", f"C{i}") for i in range(1, 8)])
    await env.insert([(50, None, "NoMail")])
    assert await asyncio.to_thread(running.cli, "test", "people") == 0
    out = capsys.readouterr().out
    assert "8 matching rows" in out and "7 rows new to this dbsync" in out and "row 50" in out
    assert await asyncio.to_thread(running.cli, "test", "people", "--exact") == 0
    captured = capsys.readouterr()
    assert "at most 8 calls" in captured.err  # said before it starts; row 50 counts too
    assert "would create 7, update 0" in captured.out
    assert await asyncio.to_thread(running.cli, "run", "people", "--progress") == 0
    captured = capsys.readouterr()
    assert "created 7" in captured.out and "failed 1" in captured.out
    summary = next(line for line in captured.out.splitlines() if line.startswith("run "))
    run_id = int(summary.split()[1])
    assert await asyncio.to_thread(running.cli, "report", str(run_id)) == 0
    out = capsys.readouterr().out
    assert f"run {run_id}" in out and "missing required field: email" in out
    assert await asyncio.to_thread(running.cli, "report", str(run_id), "--format", "csv") == 0
    out = capsys.readouterr().out
    assert "50,email,missing required field" in out
    assert await asyncio.to_thread(running.cli, "list") == 0
    out = capsys.readouterr().out
    assert "people: people -> list 1" in out and f"last run {run_id} succeeded" in out


async def test_a_run_is_cancelled_on_request_and_recorded_interrupted(
    env: Env, running: Running
) -> None:
    running.daemon.scheduler.remove_all_jobs()
    await env.insert([(i, f"k{i}@example.com", f"K{i}") for i in range(1, 200)])
    env.sb.faults.latency = 0.2  # keep it going while it is cancelled
    try:
        status, started = await running.call("POST", "/api/v1/dbsyncs/people/run")
        assert status == 202, started
        run_id = started["run_id"]
        status, body = await running.call("POST", f"/api/v1/runs/{run_id}/cancel")
        assert status == 202, body
        done = await running.wait_run(run_id)
    finally:
        env.sb.faults.latency = 0.0
    assert done["status"] == "interrupted" and "cancelled by the operator" in done["error"]
    status, body = await running.call("POST", f"/api/v1/runs/{run_id}/cancel")
    assert status == 409 and "not running" in body["error"]
    status, body = await running.call("POST", "/api/v1/runs/\u0663/cancel")  # an Arabic-Indic 3
    assert status == 400, body
    # The dbsync is free again: the next run starts and ends.
    status, started = await running.call("POST", "/api/v1/dbsyncs/people/run")
    assert status == 202, started
    assert (await running.wait_run(started["run_id"]))["status"] == "succeeded"


async def run_people(r: Running) -> dict[str, Any]:
    """Start a run of the people dbsync through the API and wait for its end."""
    status, body = await r.call("POST", "/api/v1/dbsyncs/people/run")
    assert status == 202, body
    done = await r.wait_run(body["run_id"])
    assert done["status"] == "succeeded", done
    return done


async def test_delete_missing_deletes_and_a_returning_row_is_created_again(env: Env) -> None:
    rows = [(i, f"d{i}@example.com", f"D{i}") for i in range(1, 11)]
    await env.insert(rows)
    extra = "delete_missing = true\ndelete_safety_threshold = 0.5"
    async with started(env, "manual", extra) as r:
        assert (await run_people(r))["counts"]["created"] == 10
        gone = env.contact("d3@example.com")
        assert gone is not None
        await env.sql("DELETE FROM people WHERE id IN (3, 4)")
        done = await run_people(r)
        assert done["counts"]["deleted"] == 2
        assert env.contact("d3@example.com") is None and env.sb.contacts[gone.id].deleted
        assert env.contact("d5@example.com") is not None and env.status("d5@example.com") == 1
        await env.insert(rows[2:4])
        back = await run_people(r)
        assert back["counts"]["created"] == 2 and back["counts"]["unchanged"] == 8
        again = env.contact("d3@example.com")
        assert again is not None and again.id != gone.id and env.status("d3@example.com") == 1


async def test_unsubscribe_action_through_the_daemon(env: Env) -> None:
    rows = [(i, f"u{i}@example.com", f"U{i}") for i in range(1, 11)]
    await env.insert(rows)
    extra = 'delete_missing = true\ndelete_missing_action = "unsubscribe"'
    async with started(env, "manual", extra) as r:
        status, listing = await r.call("GET", "/api/v1/dbsyncs")
        (entry,) = listing["dbsyncs"]
        assert status == 200 and entry["delete_missing_action"] == "unsubscribe"
        assert entry["null_clears"] is True
        await run_people(r)
        kept = env.contact("u3@example.com")
        await env.sql("DELETE FROM people WHERE id = 3")
        assert (await run_people(r))["counts"]["deleted"] == 1
        assert env.status("u3@example.com") == 2 and env.contact("u3@example.com") == kept
        await env.insert(rows[2:3])
        await run_people(r)
        assert env.status("u3@example.com") == 1 and env.copies("u3@example.com") == 1


async def test_null_clears_through_the_daemon(env: Env) -> None:
    await env.insert([(1, "n1@example.com", "Nina")])
    async with started(env, "manual") as r:
        await run_people(r)
        await env.sql("UPDATE people SET first_name = NULL WHERE id = 1")
        assert (await run_people(r))["counts"]["updated"] == 1
        assert env.contact("n1@example.com").first_name == ""  # type: ignore[union-attr]
    async with started(env, "manual", "null_clears = false") as r:
        await env.sql("UPDATE people SET first_name = 'Nora' WHERE id = 1")
        await run_people(r)
        await env.sql("UPDATE people SET first_name = NULL WHERE id = 1")
        await run_people(r)
        assert env.contact("n1@example.com").first_name == "Nora"  # type: ignore[union-attr]

"""A clean stop in the middle of a pull: the run says it was interrupted, the pull's job
lock is released, and the next start pulls at once."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.env import Env, wait_until

QUIET = (
    "\n[inbound]\nflush_size = 1000\nflush_interval = 600\n"
    '[sync.objects.contact]\nselection = "criteria"\n'
    'criteria = { field = "Email", op = "is_not_null" }\n'
)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.close()


def test_sigterm_during_a_pull_records_it_interrupted_and_frees_the_lock(env: Env) -> None:
    d = env.start(QUIET)
    env.sb.run(lambda: env.sf.insert("Contact", {"LastName": "Slow", "Email": "slow@x.io"}))
    # Salesforce answers its queries slowly: the pull is in flight when the stop comes.
    env.sb.run(lambda: env.sf.faults.apply({"latency": 6, "slow_paths": ["/query"]}))
    status, _ = d.json("POST", "/api/v1/pulls/contact")
    assert status == 202
    time.sleep(1.0)
    d.signal(signal.SIGTERM)
    assert d.proc.wait(30) == 0
    env.sb.run(lambda: env.sf.faults.apply({"latency": 0}))
    d2 = env.start(QUIET, name=d.config.stem, port=d.port)
    _, health = d2.json("GET", "/api/v1/health")
    [run] = [r for r in health["latest_runs"] if r["kind"] == "pull" and r["name"] == "contact"]
    assert run["status"] == "interrupted" and run["finished_at"], run
    # The lock went with the stop: a pull now runs instead of answering 409.
    status, body = d2.json("POST", "/api/v1/pulls/contact?wait=true", timeout=60)
    assert status == 200, body
    wait_until(lambda: body["counts"]["processed"] == 1, what="the contact pulled")

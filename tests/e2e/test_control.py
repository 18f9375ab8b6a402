"""Operating the engine: pause/resume, integration-wide errors, the polling fallback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.env import Env, ac_webhook, metric, queue_counts, sf_records, wait_until

QUIET = "\n[inbound]\nflush_size = 1000\nflush_interval = 600\n"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.close()


def test_paused_direction_queues_but_writes_nothing_until_resumed(env: Env) -> None:
    d = env.start(QUIET)
    assert d.json("POST", "/api/v1/sync/inbound/pause")[0] == 200
    for i in range(3):
        assert ac_webhook(env, d, 300 + i)[0] == 200
    _, body = d.json("POST", "/api/v1/flush?wait=true")
    assert body["counts"]["processed"] == 0
    assert queue_counts(d) == {"pending": 3}
    _, status = d.json("GET", "/api/v1/status")
    assert status["directions"]["inbound"]["paused"] is True
    assert env.sb.run(env.sf.collection_calls) == 0
    assert d.json("POST", "/api/v1/sync/inbound/resume")[0] == 200
    _, body = d.json("POST", "/api/v1/flush?wait=true")
    assert body["counts"]["processed"] == 3
    assert len(sf_records(env, "Contact")) == 3


def test_revoked_auth_pauses_inbound_shows_in_readyz_and_recovers(env: Env) -> None:
    d = env.start(QUIET)
    assert ac_webhook(env, d, 1)[0] == 200
    env.sb.run(lambda: env.sf.faults.apply({"revoke_auth": True, "expire_tokens": True}))
    status, body = d.json("POST", "/api/v1/flush?wait=true")
    assert status == 200 and body["counts"]["processed"] == 0
    assert body["status"] == "failed" and "auth" in body["error"].lower(), body
    # `syncd flush --wait` says the flush failed, with exit 1 (as the README promises).
    cli = subprocess.run(
        [sys.executable, "-m", "syncd", "flush", "--wait", "--config", str(d.config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 1 and '"status": "failed"' in cli.stdout, (cli.stdout, cli.stderr)
    status, ready = d.json("GET", "/readyz", token="")
    assert status == 503
    assert ready["checks"]["inbound"]["ok"] is False
    assert ready["checks"]["inbound"]["detail"].startswith("auth:")
    assert queue_counts(d) == {"pending": 1}  # nothing lost, nothing marked failed
    assert metric(d, "syncd_integration_error_active", '{category="auth",direction="inbound"}') == 1
    env.sb.run(lambda: env.sf.faults.apply({"revoke_auth": False}))
    status, body = d.json("POST", "/api/v1/flush?wait=true")
    assert body["counts"]["processed"] == 1
    # Inbound is ready again (a scheduled pull may have met the revoked auth too, and
    # outbound then waits for its next successful pull).
    wait_until(
        lambda: d.json("GET", "/readyz", token="")[1]["checks"]["inbound"]["ok"],
        what="inbound ready again",
    )
    _, st = d.json("GET", "/api/v1/status")
    assert st["directions"]["inbound"]["error"] is None


def test_polling_fallback_picks_up_tagged_hub_contacts(env: Env) -> None:
    d = env.start("\n[inbound]\nflush_size = 1\nflush_interval = 600\npoll_interval = 1\n")
    assert any(j["id"] == "poll:hub" for j in d.json("GET", "/api/v1/status")[1]["jobs"])

    def make() -> int:
        c = env.ac.insert_contact("polled@example.com", first_name="Pol", last_name="Led")
        tid = env.ac.tag_by_name("added-to-salesforce-contact") or env.ac.create_tag(
            "added-to-salesforce-contact"
        )
        env.ac.add_contact_tag(c.id, tid)
        return int(c.id)

    cid = env.sb.run(make)
    wait_until(
        lambda: any(r["Email"] == "polled@example.com" for r in sf_records(env, "Contact")),
        timeout=30,
        what="polled contact in Salesforce",
    )
    [contact] = [r for r in sf_records(env, "Contact") if r["Email"] == "polled@example.com"]
    assert contact["Syncd_Hub_Id__c"] == str(cid) and contact["LastName"] == "Led"

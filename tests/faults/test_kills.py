"""SIGKILL under load and between the CRM committing a batch and syncd recording it."""

from __future__ import annotations

import random
import signal
import time

from tests.e2e.env import Env, ac_webhook, queue_counts, wait_until
from tests.faults.harness import (
    INBOUND_ONLY,
    WebhookLoad,
    check_history,
    pick,
    restart,
    wait_settled,
)

LEASE = "lease_seconds = 2"
LOAD = "\n[inbound]\nflush_size = 100\nflush_interval = 1\n" + INBOUND_ONLY


def test_sigkill_three_times_under_steady_webhooks(env: Env) -> None:
    total, rate, records = pick((1500, 150, 300), (10_000, 500, 1200))
    d = env.start(LOAD, daemon_extra=LEASE)
    port = d.port
    load = WebhookLoad(env, lambda _: [port], records=records, total=total, rate=rate).start()
    duration = total / rate
    rng = random.Random()
    moments = sorted(rng.uniform(0.1, 0.9) * duration for _ in range(3))
    t0 = time.monotonic()
    for at in moments:
        time.sleep(max(at - (time.monotonic() - t0), 0))
        d = restart(env, d, LOAD, daemon_extra=LEASE)
    load.join(timeout=duration * 3 + 60)
    acked_before_end = dict(load.acked)
    wait_settled(env, d, load.acked, timeout=90, what="everything delivered")
    rep = check_history(env, load.acked)
    assert rep.ok, rep
    assert len(acked_before_end) == records
    # Every change was acknowledged in the end (the sender retried refused ones).
    assert sum(1 for s in load.sends if 200 <= s.status < 300) == total


def test_kill_between_crm_commit_and_recording(env: Env) -> None:
    rounds, per_round = pick((4, 40), (20, 100))
    extra = "\n[inbound]\nflush_size = 1000\nflush_interval = 600\n" + INBOUND_ONLY
    # The lease outlives the slow answer: the live daemon keeps its claims until killed.
    lease = "lease_seconds = 4"
    d = env.start(extra, daemon_extra=lease)
    acked: dict[int, int] = {}
    seq = 0
    for rnd in range(rounds):
        # Each round touches a sliding window: half updates of known records, half new ones.
        records = range(rnd * per_round // 2, rnd * per_round // 2 + per_round)
        for r in records:
            seq += 1
            status, body = ac_webhook(
                env, d, WebhookLoad.cid(r), first=f"s{seq}", last=f"Last{WebhookLoad.cid(r)}"
            )
            assert status == 200, body
            acked[r] = seq
        writes_before = len(env.sb.run(lambda: list(env.sf.ledger)))
        # Salesforce applies the batch but answers late; the kill lands before syncd records it.
        env.sb.run(
            lambda: env.sf.faults.apply({"latency_after": 8, "slow_paths": ["/composite/sobjects"]})
        )
        d.signal(signal.SIGUSR1)
        wait_until(
            lambda b=writes_before: len(env.sb.run(lambda: list(env.sf.ledger))) > b,
            timeout=30,
            what=f"round {rnd}: the batch applied by the CRM",
        )
        env.sb.run(lambda: env.sf.faults.apply({"latency_after": 0}))
        replay = "\n[inbound]\nflush_size = 1000\nflush_interval = 1\n" + INBOUND_ONLY
        d = restart(env, d, replay, daemon_extra=lease)
        wait_settled(env, d, acked, timeout=40, what=f"round {rnd} replayed")
        q = queue_counts(d)
        assert not q.get("pending") and not q.get("processing"), q
        d = restart(env, d, extra, daemon_extra=lease)
    rep = check_history(env, acked)
    assert rep.ok, rep

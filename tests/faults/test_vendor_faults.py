"""Salesforce misbehaving: 503 then 429 with Retry-After, token expiry and a failing token
endpoint, a stalled and resetting network path (through the fault proxy)."""

from __future__ import annotations

import signal
import time
from collections import Counter

from tests.e2e.env import Env, metric, queue_counts, wait_until
from tests.faults.harness import (
    FAST_HTTP,
    INBOUND_ONLY,
    RequestLog,
    WebhookLoad,
    check_history,
    pick,
    wait_settled,
)
from tests.faults.proxy import FaultProxy

DATA = "/services/data/"


def _inbound(flush_size: int, flush_interval: float) -> str:
    return (
        f"\n[inbound]\nflush_size = {flush_size}\nflush_interval = {flush_interval}\n"
        "retry_base_delay = 1\n" + INBOUND_ONLY + FAST_HTTP
    )


def test_503_then_429_with_retry_after(env: Env) -> None:
    outage, limited, interval = pick((5.0, 15.0, 10.0), (30.0, 60.0, 30.0))
    total = int((outage + limited) * 20)
    log = RequestLog(env.sf)
    d = env.start(_inbound(100, interval))
    load = WebhookLoad(env, lambda _: [d.port], records=120, total=total, rate=20).start()
    env.sb.run(
        lambda: env.sf.faults.apply(
            {"fail_ratio": 1.0, "status": 503, "fail_paths": [DATA], "retry_after": None}
        )
    )
    time.sleep(1)
    d.signal(signal.SIGUSR1)  # a flush during the outage, whatever the size and age triggers
    time.sleep(outage - 1)
    env.sb.run(lambda: env.sf.faults.apply({"fail_ratio": 0.2, "status": 429, "retry_after": 7}))
    time.sleep(limited)
    load.join(timeout=60)
    env.sb.run(lambda: env.sf.faults.apply({"fail_ratio": 0.0, "retry_after": None}))
    recovered = time.time()
    wait_settled(env, d, load.acked, timeout=2 * interval + 30, what="drained")
    drained_after = time.time() - recovered
    rep = check_history(env, load.acked)
    assert rep.ok, rep
    # The queue drains within two flush intervals of the recovery.
    assert drained_after <= 2 * interval, drained_after

    # No request sooner than Retry-After: after each 429, nothing reached the data API for 7 s.
    arrivals = sorted(t for t, path in log.arrivals if path.startswith(DATA))
    limited_at = [t for t, status, _ in log.failures if status == 429]
    assert limited_at, "no 429 was answered"
    assert any(s == 503 for _, s, _ in log.failures)
    early = []
    for t in limited_at:
        nxt = next((a for a in arrivals if a > t), None)
        if nxt is not None and nxt - t < 7.0:
            early.append(round(nxt - t, 3))
    assert not early, early
    assert metric(d, "syncd_api_retries_total", '{connector="salesforce",reason="rate_limited"}')


def test_token_expiry_and_failing_token_endpoint(env: Env) -> None:
    every, outage = pick((8, 6.0), (500, 60.0))
    # Enough calls for several expiries: small flushes, each one or two API calls.
    total, flush_size = pick((600, 20), (2000, 2))
    expiries: list[float] = []
    calls = Counter[str]()

    def expire_every(path: str) -> None:
        if path.startswith(DATA):
            calls["data"] += 1
            if calls["data"] % every == 0:
                env.sf.faults.expire_tokens = True
                expiries.append(time.time())

    log = RequestLog(env.sf)
    log.hooks.append(expire_every)
    d = env.start(_inbound(flush_size, 1))
    tokens_at_start = env.sb.run(lambda: env.sf.token_requests)
    # Phase 1: the session expires every N calls; each expiry costs exactly one re-auth.
    acked: dict[int, int] = {}
    sent = 0
    deadline = time.monotonic() + pick(60, 300)
    # Until the session has expired a few times (how many calls a change costs varies).
    while len(expiries) < 3 and time.monotonic() < deadline:
        load = WebhookLoad(
            env,
            lambda _: [d.port],
            records=120,
            total=total // 2,
            rate=60,
            offset=sent,
            acked=acked,
        ).start()
        load.join(timeout=90)
        sent += total // 2
        acked = load.acked
        wait_settled(env, d, acked, timeout=60, what="phase 1 delivered")
    tokens = env.sb.run(lambda: env.sf.token_requests) - tokens_at_start
    assert expiries, "no expiry happened"
    assert tokens == len(expiries), (tokens, len(expiries))
    assert metric(d, "syncd_api_reauth_total", '{connector="salesforce"}') == len(expiries)

    # Phase 2: sessions revoked and the token endpoint refusing: inbound pauses, intake goes on.
    env.sb.run(lambda: env.sf.faults.apply({"revoke_auth": True}))
    load2 = WebhookLoad(
        env,
        lambda _: [d.port],
        records=120,
        total=total // 2,
        rate=60,
        offset=sent,
        acked=acked,
    ).start()

    def paused() -> bool:
        status, body = d.json("GET", "/readyz", token="")
        return status == 503 and not body["checks"]["inbound"]["ok"]

    wait_until(paused, timeout=outage + 20, what="inbound paused")
    time.sleep(outage)
    assert queue_counts(d).get("pending")
    env.sb.run(lambda: env.sf.faults.apply({"revoke_auth": False}))
    # Phase 3: the direction resumes by itself and nothing is lost.
    load2.join(timeout=60)
    wait_until(lambda: d.json("GET", "/readyz", token="")[0] == 200, timeout=90, what="resumed")
    wait_settled(env, d, load2.acked, timeout=60, what="all delivered")
    rep = check_history(env, load2.acked)
    assert rep.ok, rep
    assert not queue_counts(d).get("error")


def test_stall_and_resets_between_syncd_and_salesforce(env: Env) -> None:
    stall, resets = pick((6.0, 5.0), (30.0, 30.0))
    proxy = FaultProxy("127.0.0.1", int(env.sb.set.url("salesforce").rsplit(":", 1)[1]))
    try:
        connect, read = 1.0, 2.0
        http = f"""
[crm.http]
connect_timeout = {connect}
read_timeout = {read}
retry_attempts = 4
retry_base_delay = 0.2
retry_max_delay = 1
"""
        extra = (
            "\n[inbound]\nflush_size = 50\nflush_interval = 1\nretry_base_delay = 1\n"
            + INBOUND_ONLY
            + http
        )
        cfg = env.config(extra).replace(
            env.sb.set.url("salesforce"), f"http://127.0.0.1:{proxy.port}"
        )
        from tests.e2e.daemon import start_daemon

        d = start_daemon(env.tmp, cfg)
        env.daemons.append(d)
        d.wait_ready()
        total = int((stall + resets + 6) * 40)
        load = WebhookLoad(env, lambda _: [d.port], records=120, total=total, rate=40).start()
        time.sleep(3)
        proxy.set_mode("stall")
        time.sleep(stall)
        proxy.set_mode("pass")
        ends = time.monotonic() + resets
        while time.monotonic() < ends:
            proxy.reset_all()
            time.sleep(0.3)
        load.join(timeout=90)
        wait_settled(env, d, load.acked, timeout=90, what="all delivered")
        rep = check_history(env, load.acked)
        assert rep.ok, rep
        assert proxy.resets > 0
        episodes = [e for e in proxy.stalls if e.closed_at is not None]
        assert episodes, "no call was caught in the stall"
        # No call outlived its timeout by more than 1 s.
        limit = connect + read + 1.0
        late = [round(e.closed_at - e.held_since, 2) for e in episodes if e.closed_at]
        assert max(late) <= limit, late
    finally:
        proxy.close()

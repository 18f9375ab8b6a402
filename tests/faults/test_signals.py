"""Signals under load: SIGHUP reloads alternating valid and invalid configs; SIGTERM with a
buffer full and a flush in flight."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

from tests.e2e.daemon import DaemonProcess
from tests.e2e.env import Env, ac_webhook, metric, queue_counts, sf_records, wait_until
from tests.faults.harness import INBOUND_ONLY, WebhookLoad, check_history, pick, wait_settled


def _write(path: Path, text: str) -> None:
    # Atomically, as an operator's deploy tool would: the daemon never reads half a file.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _reloads(d: DaemonProcess, outcome: str) -> float:
    return metric(d, "syncd_config_reloads_total", f'{{outcome="{outcome}"}}')


def test_sighup_reloads_under_load_valid_and_invalid(env: Env) -> None:
    reloads = pick(6, 20)
    extra = "\n[inbound]\nflush_size = 40\nflush_interval = 1\n" + INBOUND_ONLY
    d = env.start(extra)
    original = d.config.read_text()
    load = WebhookLoad(env, lambda _: [d.port], records=120, total=reloads * 60, rate=40).start()
    digests = [d.json("GET", "/api/v1/status")[1]["config_digest"]]
    valid = invalid = 0
    for n in range(reloads):
        time.sleep(0.5)
        if n % 2 == 0:
            size = 60 if valid % 2 == 0 else 40
            _write(d.config, original.replace("flush_size = 40", f"flush_size = {size}"))
            valid += 1
        else:
            _write(d.config, original + "\n[outbound]\ninterval_hours = 5\n")
            invalid += 1
        d.signal(signal.SIGHUP)
        wait_until(
            lambda v=valid, i=invalid: (_reloads(d, "success"), _reloads(d, "failure")) == (v, i),
            timeout=15,
            what=f"reload {n} handled",
        )
        digest = d.json("GET", "/api/v1/status")[1]["config_digest"]
        if n % 2 == 0:
            assert digest != digests[-1], "a valid reload did not apply"
        else:
            assert digest == digests[-1], "an invalid reload replaced the running config"
        digests.append(digest)
    load.join(timeout=90)
    wait_settled(env, d, load.acked, timeout=60, what="all delivered")
    rep = check_history(env, load.acked)
    assert rep.ok, rep
    rejected = [e for e in d.log_events() if e.get("event") == "reload_rejected"]
    assert len(rejected) >= invalid
    assert all("interval_hours" in str(e.get("problem")) for e in rejected)
    assert d.proc.poll() is None


def test_sigterm_with_250_buffered_and_a_flush_in_flight(env: Env) -> None:
    drain, latency = 6.0, 4.0
    extra = "\n[inbound]\nflush_size = 1000\nflush_interval = 600\n" + INBOUND_ONLY
    d = env.start(extra, env={"SYNCD_DAEMON__DRAIN_TIMEOUT": str(drain)})
    acked: dict[int, int] = {}
    for r in range(250):
        cid = WebhookLoad.cid(r)
        status, body = ac_webhook(env, d, cid, first=f"s{r}", last=f"Last{cid}")
        assert status == 200, body
        acked[r] = r
    # Each write takes `latency`: the first batch (200) lands inside the drain timeout, the
    # second (50) cannot, so it is cut short, released, and sent after the restart.
    env.sb.run(
        lambda: env.sf.faults.apply({"latency": latency, "slow_paths": ["/composite/sobjects"]})
    )
    d.signal(signal.SIGUSR1)
    wait_until(
        lambda: env.sb.run(env.sf.collection_calls) >= 1, timeout=20, what="a write in flight"
    )
    term_at = time.monotonic()
    d.signal(signal.SIGTERM)
    code = d.proc.wait(drain + 15)
    took = time.monotonic() - term_at
    assert code == 0, d.logs()[-2000:]
    assert took <= drain + 2.0, took
    time.sleep(latency)  # the simulator finishes the write syncd gave up on
    env.sb.run(lambda: env.sf.faults.apply({"latency": 0}))
    d2 = env.start(extra, name="syncd")
    # The batch in flight at SIGTERM completed and was recorded; the cut-short one is queued.
    assert queue_counts(d2) == {"processed": 200, "pending": 50}, queue_counts(d2)
    d2.signal(signal.SIGUSR1)
    wait_settled(env, d2, acked, timeout=40, what="the rest sent after restart")
    rep = check_history(env, acked)
    assert rep.ok, rep
    # The batch in flight at SIGTERM was recorded before the exit: never sent again.
    hub_of = {c["Id"]: c["Syncd_Hub_Id__c"] for c in sf_records(env, "Contact")}
    writes = Counter(hub_of[e.record_id] for e in env.sb.run(lambda: list(env.sf.ledger)))
    first = {str(WebhookLoad.cid(r)) for r in range(200)}
    assert all(writes[h] == 1 for h in first), [h for h in first if writes[h] != 1][:5]

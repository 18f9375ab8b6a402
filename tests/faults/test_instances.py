"""Several instances on one MariaDB store, one truth: each observed case of issue 14.

- A claimer frozen (SIGSTOP) past its lease, then thawed, writes nothing: the newer value
  another instance sent since stays last in Salesforce (leases of 6 and 20 s).
- Pause and resume sent to either instance hold for all, across a restart.
- A scheduled pull runs once per interval for the cluster, with 1, 2 or 3 instances.
- Runs stopped by SIGTERM or SIGKILL end `interrupted`; the CLI says when a pull it asked
  for runs on another instance.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

from tests.e2e.env import Env, ac_webhook, queue_counts, sf_records, wait_until
from tests.faults.cluster import Cluster, ts

INBOUND = """
[inbound]
flush_size = 10
flush_interval = 600
[outbound]
interval_seconds_override = 3600
[sync.objects.contact]
direction = "hub-to-crm"
"""
CIDS = range(200, 210)


def _first_names(env: Env) -> dict[str, Any]:
    return {str(c.get("Syncd_Hub_Id__c")): c.get("FirstName") for c in sf_records(env, "Contact")}


def _last_written(env: Env) -> dict[str, str]:
    """Per Salesforce contact, the FirstName of the last write that set one (the ledger)."""
    last: dict[str, str] = {}
    for e in env.sb.run(lambda: list(env.sf.ledger)):
        if e.object == "Contact" and "FirstName" in e.fields:
            last[e.record_id] = str(e.fields["FirstName"])
    return last


@pytest.mark.parametrize("lease", [6.0, 20.0])
def test_a_frozen_claimer_never_writes_an_older_value_last(
    env: Env, mysql_db: tuple[str, str], lease: float
) -> None:
    db, dsn = mysql_db
    c = Cluster(env, db, dsn, lease, INBOUND)
    a = c.start("a")
    for cid in CIDS:
        assert ac_webhook(env, a, cid, first="s0")[0] == 200
    wait_until(lambda: set(_first_names(env).values()) == {"s0"}, timeout=60, what="s0 synced")
    assert len(_first_names(env)) == len(CIDS)

    # Salesforce is slow to answer queries: A's flush of s1 reads the CRM for a while.
    env.sb.run(lambda: env.sf.faults.apply({"latency": 4.0, "slow_paths": ["/query"]}))
    for cid in CIDS:
        assert ac_webhook(env, a, cid, first="s1")[0] == 200
    wait_until(lambda: c.processing_of(c.owner["a"])[0] == len(CIDS), what="A claimed s1")
    time.sleep(1.0)  # into the slow query
    c.freeze("a")
    frozen_at = time.monotonic()

    # B comes up, gets s2 for the same contacts, reclaims A's expired claims, writes s2.
    b = c.start("b")
    for cid in CIDS:
        assert ac_webhook(env, b, cid, first="s2")[0] == 200
    wait_until(
        lambda: set(_first_names(env).values()) == {"s2"},
        timeout=lease * 2 + 90,
        what="s2 written by B",
    )
    wait_until(
        lambda: c.processing_of(c.owner["a"])[0] == 0,
        timeout=lease * 2 + 30,
        what="A's claims reclaimed",
    )
    wait_until(lambda: not queue_counts(b).get("pending"), timeout=60, what="B done")

    # A wakes up unaware of the time that passed, in the middle of its flush of s1.
    stopped_for = time.monotonic() - frozen_at
    assert stopped_for > lease
    c.thaw("a")
    wait_until(
        lambda: any(e.get("event") == "lease_lost" for e in a.log_events()),
        timeout=60,
        what="A saw its lease lost",
    )
    env.sb.run(lambda: env.sf.faults.apply({"latency": 0}))
    time.sleep(2.0)
    assert set(_first_names(env).values()) == {"s2"}
    assert set(_last_written(env).values()) == {"s2"}, _last_written(env)
    [lost] = [e for e in a.log_events() if e.get("event") == "lease_lost"]
    assert len(lost["entries"]) == len(CIDS)
    _, metrics, _ = a.request("GET", "/metrics", token="")
    assert f'syncd_leases_lost_total{{direction="inbound"}} {len(CIDS)}.0' in metrics.decode()


PAUSABLE = """
[inbound]
flush_size = 50
flush_interval = 1
[outbound]
interval_seconds_override = 3600
[sync.objects.contact]
direction = "hub-to-crm"
"""


def _paused(d: Any, direction: str = "inbound") -> bool:
    _, body = d.json("GET", "/api/v1/status")
    return bool(body["directions"][direction]["paused"])


def test_pause_and_resume_through_either_instance_hold_for_all(
    env: Env, mysql_db: tuple[str, str]
) -> None:
    db, dsn = mysql_db
    c = Cluster(env, db, dsn, 10.0, PAUSABLE)
    a, b = c.start("a"), c.start("b")
    assert a.json("POST", "/api/v1/sync/inbound/pause") == (200, {"status": "paused"})
    wait_until(lambda: _paused(b), timeout=10, what="B paused by A's pause")
    for cid in range(300, 350):
        assert ac_webhook(env, b, cid, first="p1")[0] == 200
    time.sleep(4.0)  # four flush intervals
    assert sf_records(env, "Contact") == []
    assert queue_counts(b).get("pending") == 50

    # Each instance's view of the shared state, as its heartbeat left it.
    def views() -> dict[str, Any]:
        _, body = a.json("GET", "/api/v1/status")
        return {i["id"]: i for i in body["instances"]}

    wait_until(lambda: set(views()) >= {c.owner["a"], c.owner["b"]}, what="both beat")
    seen = views()[c.owner["b"]]
    assert seen["alive"] and seen["view"]["inbound"]["paused"] is True
    assert seen["view"]["inbound"]["read_at"] is not None

    # B restarts while paused: still paused. A resumes: B (restarted) resumes too.
    assert b.stop() == 0
    b = c.start("b")
    assert _paused(b)
    assert a.json("POST", "/api/v1/sync/inbound/resume") == (200, {"status": "resumed"})
    wait_until(lambda: len(sf_records(env, "Contact")) == 50, timeout=60, what="50 delivered")

    # And the other way round: a pause sent to B holds A.
    assert b.json("POST", "/api/v1/sync/inbound/pause")[0] == 200
    wait_until(lambda: _paused(a), timeout=10, what="A paused by B's pause")
    assert b.json("POST", "/api/v1/sync/inbound/resume")[0] == 200
    wait_until(lambda: not _paused(a), timeout=10, what="A resumed by B's resume")


SCHEDULED = """
[inbound]
flush_size = 1000
flush_interval = 600
[outbound]
interval_seconds_override = {every}
[sync.objects.contact]
selection = "criteria"
criteria = {{ field = "Email", op = "is_not_null" }}
"""


def test_one_scheduled_pull_per_interval_whatever_the_number_of_instances(
    env: Env, mysql_db: tuple[str, str]
) -> None:
    every, intervals = 3.0, 4  # one instance per interval: 4; one per instance would be 8 or 12
    db, dsn = mysql_db
    counts: dict[int, int] = {}
    # One instance, then three (two add nothing three does not test, and 20 s to the suite).
    for n in (1, 3):
        names = [f"i{n}{k}" for k in range(n)]
        c = Cluster(env, db, dsn, 10.0, SCHEDULED.format(every=every), names=names)
        for name in names:
            c.start(name)
        # Every instance's first tick comes 5 s after its start: count from then on.
        time.sleep(5.0 + every / 2)
        t0 = time.time()
        time.sleep(every * intervals)
        t1 = time.time()
        for name in names:
            assert c.live[name].stop() == 0
        starts = [
            ts(r[0])
            for r in c.sql(
                "SELECT started_at FROM runs WHERE kind = 'pull' AND name = 'contact'"
                " AND run_trigger = 'schedule'"
            )
        ]
        counts[n] = sum(1 for s in starts if t0 <= s < t1)
    # One pull per interval, however many instances (not one per instance); a tick may
    # be lost to a slow start on this machine, never doubled.
    assert all(intervals - 2 <= counts[n] <= intervals + 1 for n in (1, 3)), counts


RUNS = """
[inbound]
flush_size = 1000
flush_interval = 600
[outbound]
interval_seconds_override = 3600
[sync.objects.contact]
selection = "criteria"
criteria = { field = "Email", op = "is_not_null" }
"""


def _pull_runs(c: Cluster) -> list[tuple[int, str, str, str | None]]:
    return [
        (int(r[0]), str(r[1]), str(r[2]), r[3])
        for r in c.sql(
            "SELECT id, owner, status, error_message FROM runs"
            " WHERE kind = 'pull' AND name = 'contact' ORDER BY id"
        )
    ]


def _cli_pull(c: Cluster, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "syncd", "pull", "contact", "--config", str(c.live[name].config)]
    return subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=60)


def test_run_records_after_sigterm_and_sigkill_and_refused_triggers(
    env: Env, mysql_db: tuple[str, str]
) -> None:
    db, dsn = mysql_db
    c = Cluster(env, db, dsn, 6.0, RUNS)
    a, _ = c.start("a"), c.start("b")
    # The first scheduled pull of the cluster (5 s after the first start) runs and ends.
    wait_until(
        lambda: [r[2] for r in _pull_runs(c)] == ["succeeded"], timeout=30, what="first pull"
    )
    env.sb.run(lambda: env.sf.insert("Contact", {"LastName": "Slow", "Email": "slow@x.io"}))
    # Queries hang for longer than the test needs: each pull below is in flight when struck.
    env.sb.run(lambda: env.sf.faults.apply({"latency": 60.0, "slow_paths": ["/query"]}))

    # SIGTERM in the middle of a pull: recorded interrupted by the instance stopping.
    assert a.json("POST", "/api/v1/pulls/contact")[0] == 202
    time.sleep(1.0)
    assert a.stop() == 0
    run_id, owner, status, error = _pull_runs(c)[-1]
    assert (owner, status) == (c.owner["a"], "interrupted"), error

    # Another pull on A; asked of B meanwhile, the CLI says it runs elsewhere (exit 1).
    a = c.start("a")
    assert a.json("POST", "/api/v1/pulls/contact")[0] == 202
    for extra in ((), ("--wait",)):
        out = _cli_pull(c, "b", *extra)
        assert out.returncode == 1, (out.stdout, out.stderr)
        assert "running on another instance" in out.stderr and "started" not in out.stdout

    # SIGKILL in the middle of it: nobody is left to record the end. A comes back under
    # another id; any live instance closes the run once its owner's heartbeat is old.
    killed_owner = c.owner["a"]
    c.kill("a")
    c.start("a")
    wait_until(lambda: _pull_runs(c)[-1][2] == "interrupted", timeout=40, what="killed run closed")
    run_id2, owner2, _, error2 = _pull_runs(c)[-1]
    assert run_id2 > run_id and owner2 == killed_owner
    assert error2 is not None and "went away" in error2

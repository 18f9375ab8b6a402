"""Inbound end to end: webhooks into the real daemon, flushed into the Salesforce simulator."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.env import (
    AC_HOOK,
    FORM,
    Env,
    ac_webhook,
    metric,
    queue_counts,
    sf_records,
    wait_until,
)

FAST = "\n[inbound]\nflush_size = 100\nflush_interval = 2\n"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.close()


def test_250_changes_make_three_flushes_and_three_calls(env: Env) -> None:
    d = env.start(FAST)
    # In steps, each sent once the one before is written: a size flush takes whole
    # hundreds of what is pending, so on a fast machine 200 could otherwise go at once.
    for start, end in ((0, 100), (100, 200), (200, 250)):
        for i in range(start, end):
            status, body = ac_webhook(env, d, 1000 + i)
            assert status == 200, body
        wait_until(lambda n=end: queue_counts(d).get("processed") == n, what=f"{end} processed")
    assert env.sb.run(env.sf.collection_calls) == 3
    assert metric(d, "syncd_flushes_total", '{trigger="size"}') == 2
    assert metric(d, "syncd_flushes_total", '{trigger="interval"}') == 1
    contacts = sf_records(env, "Contact")
    by_ext = Counter(c["Syncd_Hub_Id__c"] for c in contacts)
    assert len(by_ext) == 250 and set(by_ext.values()) == {1}
    writes = Counter(e.key for e in env.sb.run(lambda: list(env.sf.ledger)))
    assert len(writes) == 250 and set(writes.values()) == {1}


def test_one_record_changed_100_times_is_one_entry_and_one_write(env: Env) -> None:
    d = env.start("\n[inbound]\nflush_size = 100\nflush_interval = 600\n")
    for i in range(100):
        assert ac_webhook(env, d, 7, first=f"v{i}")[0] == 200
    assert queue_counts(d) == {"pending": 1}
    status, body = d.json("POST", "/api/v1/flush?wait=true")
    assert status == 200 and body["counts"]["processed"] == 1
    assert env.sb.run(env.sf.collection_calls) == 1
    [contact] = sf_records(env, "Contact")
    assert contact["FirstName"] == "v99"  # newest value won


def test_sighup_changes_flush_size_live(env: Env) -> None:
    d = env.start("\n[inbound]\nflush_size = 1000\nflush_interval = 600\n")
    for i in range(10):
        assert ac_webhook(env, d, 100 + i)[0] == 200
    time.sleep(0.5)
    assert queue_counts(d) == {"pending": 10}
    text = d.config.read_text().replace("flush_size = 1000", "flush_size = 5")
    d.config.write_text(text)
    d.signal(signal.SIGHUP)
    wait_until(lambda: queue_counts(d).get("processed") == 10, what="size flush after reload")
    assert metric(d, "syncd_flushes_total", '{trigger="size"}') == 1


def test_tags_decide_what_syncs(env: Env) -> None:
    d = env.start("\n[inbound]\nflush_size = 1000\nflush_interval = 600\n")
    assert ac_webhook(env, d, 1, tags="added-to-salesforce-contact")[0] == 200
    assert ac_webhook(env, d, 2, tags="added-to-salesforce-lead", fields={"company": "x"})[0] == 200
    assert ac_webhook(env, d, 3, tags="newsletter, vip")[0] == 200
    assert (
        ac_webhook(
            env, d, 4, tags="created-from-salesforce-lead, salesforce-lead-converted-to-contact"
        )[0]
        == 200
    )
    status, body = d.json("POST", "/api/v1/flush?wait=true")
    assert status == 200
    counts = body["counts"]
    assert counts["excluded"] == 1
    contacts = {c["Syncd_Hub_Id__c"] for c in sf_records(env, "Contact")}
    leads = {c["Syncd_Hub_Id__c"] for c in sf_records(env, "Lead")}
    assert contacts == {"1", "4"}
    # The lead lacks a mapped Company: it fails validation before any call, with the reason.
    assert "2" not in leads
    assert queue_counts(d).get("excluded") == 1
    assert queue_counts(d).get("error") == 1


def test_validation_errors_make_no_call(env: Env) -> None:
    d = env.start("\n[inbound]\nflush_size = 1000\nflush_interval = 600\n")
    assert ac_webhook(env, d, 1, last="")[0] == 200
    assert ac_webhook(env, d, 2, email="not-an-email")[0] == 200
    status, body = d.json("POST", "/api/v1/flush?wait=true")
    assert status == 200 and body["counts"]["errors"] == 2
    assert env.sb.run(env.sf.collection_calls) == 0


def test_same_email_different_case_is_linked_not_duplicated(env: Env) -> None:
    existing = env.sb.run(
        lambda: env.sf.insert("Contact", {"LastName": "Lee", "Email": "Ann.Lee@Example.com"})
    )
    d = env.start("\n[inbound]\nflush_size = 1000\nflush_interval = 600\n")
    assert ac_webhook(env, d, 55, email="ann.lee@EXAMPLE.com", first="Ann", last="Lee")[0] == 200
    status, body = d.json("POST", "/api/v1/flush?wait=true")
    assert status == 200 and body["counts"]["processed"] == 1
    [contact] = sf_records(env, "Contact")
    assert contact["Id"] == existing["Id"]
    assert contact["Syncd_Hub_Id__c"] == "55" and contact["FirstName"] == "Ann"


def test_salesforce_duplicate_rule_error_names_the_match_until_allow_save(env: Env) -> None:
    """The simulator's duplicate rules are on (as the standard rules are in most orgs): a
    hub contact whose new email is an unlinked Salesforce contact's is refused, and the
    error names that contact; with crm.duplicate_rules_allow_save the retry saves it."""
    assert env.sb.run(lambda: env.sf.duplicate_rules) == "alert"
    quiet = "\n[inbound]\nflush_size = 1000\nflush_interval = 600\n"
    # A contact someone made in Salesforce, which syncd never linked.
    taken = env.sb.run(
        lambda: env.sf.insert("Contact", {"LastName": "Taken", "Email": "taken@example.com"})
    )
    d = env.start(quiet)
    assert ac_webhook(env, d, 61, first="Pat")[0] == 200
    assert d.json("POST", "/api/v1/flush?wait=true")[1]["counts"]["processed"] == 1
    [mine] = [c for c in sf_records(env, "Contact") if c["Syncd_Hub_Id__c"] == "61"]
    # The person gives the hub the email the other Salesforce contact has.
    assert ac_webhook(env, d, 61, email="taken@example.com", first="Pat")[0] == 200
    status, body = d.json("POST", "/api/v1/flush?wait=true")
    assert status == 200 and body["counts"]["errors"] == 1, body
    _, listing = d.json("GET", "/api/v1/queue?direction=inbound&status=error")
    [entry] = listing["entries"]
    _, detail = d.json("GET", f"/api/v1/queue/{entry['id']}")
    assert detail["error"]["code"] == "DUPLICATES_DETECTED"
    assert (
        f"existing Contact {taken['Id']} (same email taken@example.com)"
        in (detail["error"]["message"])
    )
    assert "duplicate_rules_allow_save" in detail["error"]["hint"]
    assert {c["Id"]: c["Email"] for c in sf_records(env, "Contact")}[mine["Id"]] == (
        "person61@example.com"
    )

    # The operator lets syncd save past rules that only alert, restarts it and retries.
    assert d.stop() == 0
    allow = 'auth_flow = "client_credentials"\nduplicate_rules_allow_save = true'
    config = env.config(quiet).replace('auth_flow = "client_credentials"', allow)
    d = env.start_config(config)
    status, _ = d.json("POST", "/api/v1/queue/retry?now=true&status=error&direction=inbound")
    assert status == 200
    wait_until(lambda: queue_counts(d) == {"processed": 2}, what="the retry saved")
    emails = {c["Id"]: c["Email"] for c in sf_records(env, "Contact")}
    assert emails == {taken["Id"]: "taken@example.com", mine["Id"]: "taken@example.com"}


def test_untagged_update_is_excluded_with_reason(env: Env) -> None:
    d = env.start("\n[inbound]\nflush_size = 1000\nflush_interval = 600\n")
    assert ac_webhook(env, d, 9, tags="")[0] == 200
    d.json("POST", "/api/v1/flush?wait=true")
    assert queue_counts(d) == {"excluded": 1}
    assert env.sb.run(env.sf.collection_calls) == 0


def test_sigkill_mid_flush_then_restart_delivers_each_change_once(env: Env) -> None:
    extra = "\n[inbound]\nflush_size = 50\nflush_interval = 1\n"
    lease = "lease_seconds = 2"
    d = env.start(extra, daemon_extra=lease)
    # The CRM applies the batch but answers late: the kill lands before syncd records it.
    env.sb.run(
        lambda: env.sf.faults.apply({"latency_after": 1.5, "slow_paths": ["/composite/sobjects"]})
    )
    for i in range(50):
        assert ac_webhook(env, d, 5000 + i)[0] == 200
    # Killed once Salesforce applied the batch, before its late answer reaches syncd.
    wait_until(lambda: len(sf_records(env, "Contact")) == 50, what="the batch applied")
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(10)
    env.sb.run(lambda: env.sf.faults.apply({"latency_after": 0}))
    d2 = env.start(extra, name="syncd", daemon_extra=lease)
    wait_until(lambda: queue_counts(d2).get("processed") == 50, timeout=40, what="replayed flush")
    contacts = sf_records(env, "Contact")
    by_ext = Counter(c["Syncd_Hub_Id__c"] for c in contacts)
    assert len(by_ext) == 50 and set(by_ext.values()) == {1}, by_ext


def test_second_sigterm_exits_at_once_and_nothing_is_lost(env: Env) -> None:
    d = env.start("\n[inbound]\nflush_size = 1000\nflush_interval = 600\n")
    for i in range(20):
        assert ac_webhook(env, d, 900 + i)[0] == 200
    # Salesforce answers very slowly, so the drain flush is still in flight.
    env.sb.run(lambda: env.sf.faults.apply({"latency": 8, "slow_paths": ["/composite/sobjects"]}))
    d.signal(signal.SIGTERM)
    time.sleep(1.0)
    assert d.proc.poll() is None  # draining
    started = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.proc.wait(10) == 130
    assert time.monotonic() - started < 5
    env.sb.run(lambda: env.sf.faults.apply({"latency": 0}))
    d2 = env.start(
        "\n[inbound]\nflush_size = 1000\nflush_interval = 1\n", daemon_extra="lease_seconds = 2"
    )
    wait_until(
        lambda: queue_counts(d2).get("processed") == 20, timeout=40, what="sent after restart"
    )
    by_ext = Counter(c["Syncd_Hub_Id__c"] for c in sf_records(env, "Contact"))
    assert len(by_ext) == 20 and set(by_ext.values()) == {1}


def test_oversized_and_malformed_webhooks_are_4xx_and_store_nothing(env: Env) -> None:
    d = env.start("\n[inbound]\nflush_size = 1000\nflush_interval = 600\n")
    big = b"type=update&contact[id]=1&contact[email]=" + b"x" * (2 * 1024 * 1024)
    status, _, _ = d.request("POST", AC_HOOK, big, headers=FORM)
    assert status == 413
    status, body, _ = d.request("POST", AC_HOOK, b"type=update&contact[id]=abc", headers=FORM)
    assert status == 400 and b"contact[id]" in body
    status, _, _ = d.request(
        "POST", AC_HOOK, b'{"type": "update"}', headers={"Content-Type": "application/json"}
    )
    assert status == 400
    status, _, _ = d.request(
        "POST", "/webhooks/activecampaign/wrong-token", b"type=update", headers=FORM
    )
    assert status == 404
    assert queue_counts(d) == {}

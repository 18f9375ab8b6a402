"""Outbound end to end: scheduled/on-demand pulls from the Salesforce simulator into the hub."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from syncd.sandbox.salesforce.app import bulk_insert_contacts
from syncd.sandbox.salesforce.soql import now_utc
from tests.e2e.env import Env, ac_webhook, queue_counts, sf_records

QUIET = "\n[inbound]\nflush_size = 1000\nflush_interval = 600\n"
SEL_CRITERIA = (
    'selection = "criteria"\ncriteria = { field = "LastName", op = "starts_with", value = "Sel" }'
)
SEL_MAPPING = 'mapping = { email = "Email", lastName = "LastName" }'
FAST_HUB = "\n[hub.http]\nretry_attempts = 2\nretry_base_delay = 0.05\n"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.close()


def ac_contacts(env: Env) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        return {c.email.lower(): c for c in env.ac.contacts.values() if not c.deleted}

    return dict(env.sb.run(read))


def ac_tags(env: Env, email: str) -> set[str]:
    def read() -> set[str]:
        cid = env.ac.by_email[email.lower()]
        return {str(env.ac.tags[t]["tag"]) for t in env.ac.tags_of.get(cid, {})}

    return set(env.sb.run(read))


def start(env: Env, extra: str = "") -> Any:
    d = env.start(QUIET + extra)
    return d


def pull(d: Any, obj: str = "contact") -> dict[str, int]:
    status, body = d.json("POST", f"/api/v1/pulls/{obj}?wait=true", timeout=120)
    assert status == 200, body
    return dict(body["counts"])


def test_pull_5000_changed_contacts_into_the_hub(env: Env) -> None:
    d = start(env)
    assert pull(d)["read"] == 0  # all_new: the first pull only marks when syncing began
    env.sb.run(lambda: bulk_insert_contacts(env.sf, 5000, start=now_utc(), prefix="new"))
    counts = pull(d)
    assert counts["read"] == 5000 and counts["processed"] == 5000
    contacts = ac_contacts(env)
    assert sum(1 for e in contacts if e.startswith("new")) == 5000
    assert ac_tags(env, "new17@example.com") == {"created-from-salesforce-contact"}
    # Nothing changed: the next pull re-reads only the overlap and writes nothing.
    again = pull(d)
    assert again["processed"] == 0


def pull_with_half_the_imports_failing(env: Env, prefix: str) -> tuple[Any, int, Any]:
    """A daemon after one clean pull; 1,500 new contacts, pulled while half the hub's bulk
    imports answer 503: the daemon and the pull's answer."""
    d = start(env, FAST_HUB)
    pull(d)
    env.sb.run(lambda: bulk_insert_contacts(env.sf, 1500, start=now_utc(), prefix=prefix))
    env.sb.run(
        lambda: env.ac.faults.apply(
            {"fail_ratio": 0.5, "status": 503, "fail_paths": ["/api/3/import/bulk_import"]}
        )
    )
    status, body = d.json("POST", "/api/v1/pulls/contact?wait=true", timeout=120)
    return d, status, body


def test_hub_failure_mid_pull_keeps_cursor_and_retry_has_no_duplicates(env: Env) -> None:
    d, status, body = pull_with_half_the_imports_failing(env, "mid")
    assert status == 200 and body["counts"]["read"] == 1500
    assert body["counts"]["processed"] < 1500  # the pull stopped at the failed write
    env.sb.run(lambda: env.ac.faults.apply({"fail_ratio": 0.0}))
    counts = pull(d)
    # The cursor did not move: the retry read every record again and finished the job.
    assert counts["read"] == 1500
    contacts = ac_contacts(env)
    assert sum(1 for e in contacts if e.startswith("mid")) == 1500
    emails = Counter(c.email.lower() for c in env.sb.run(lambda: list(env.ac.contacts.values())))
    assert max(emails.values()) == 1


def test_failed_pull_queues_what_it_did_not_record_and_next_pull_merges_it(env: Env) -> None:
    d, status, body = pull_with_half_the_imports_failing(env, "q")
    assert status == 200
    first = body["counts"]["processed"]
    assert first < 1500
    after_failure = queue_counts(d, "outbound")
    # Records sent directly are recorded once, as processed; what the pull read but did not
    # record waits as pending entries, nothing is left in flight.
    assert after_failure.get("processed", 0) == first
    assert 0 < after_failure.get("pending", 0) <= 1500 - first
    assert "processing" not in after_failure
    env.sb.run(lambda: env.ac.faults.apply({"fail_ratio": 0.0}))
    counts = pull(d)
    # Queued records go through the queue (merged with this pull's read of them); the ones
    # recorded before are unchanged and cost no hub call.
    assert counts["read"] == 1500
    assert counts["processed"] == 1500 - first and counts["skipped"] == first
    done = queue_counts(d, "outbound")
    assert set(done) == {"processed"} and done["processed"] == 1500 + first
    assert sum(1 for e in ac_contacts(env) if e.startswith("q")) == 1500


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        ('selection = "none"', 0),
        ('selection = "flagged"\nflag_field = "HasOptedOutOfEmail"', 2),
        (SEL_CRITERIA, 3),
    ],
)
def test_selection_modes(env: Env, selection: str, expected: int) -> None:
    base = now_utc() - timedelta(minutes=5)

    def seed() -> None:
        for i in range(3):
            env.sf.insert("Contact", {"LastName": f"Sel{i}", "Email": f"sel{i}@x.io"}, at=base)
        for i in range(2):
            env.sf.insert(
                "Contact",
                {"LastName": f"Flag{i}", "Email": f"flag{i}@x.io", "HasOptedOutOfEmail": True},
                at=base,
            )

    env.sb.run(seed)
    d = start(
        env,
        f"\n[sync.objects.contact]\n{selection}\n{SEL_MAPPING}\n",
    )
    counts = pull(d)
    assert counts["processed"] == expected


def test_converted_lead_becomes_the_contact_without_duplicate(env: Env) -> None:
    d = start(
        env,
        '\n[sync.objects.lead]\nselection = "criteria"\n'
        'criteria = { field = "LastName", op = "=", value = "Conv" }\n',
    )
    lead = env.sb.run(
        lambda: env.sf.insert("Lead", {"LastName": "Conv", "Company": "Acme", "Email": "conv@x.io"})
    )
    assert pull(d, "lead")["processed"] == 1
    assert ac_tags(env, "conv@x.io") == {"created-from-salesforce-lead"}
    env.sb.run(lambda: env.sf.convert_lead(lead["Id"]))
    counts = pull(d, "lead")
    assert counts["converted"] == 1
    pull(d, "contact")
    assert ac_tags(env, "conv@x.io") == {"salesforce-lead-converted-to-contact"}
    assert sum(1 for e in ac_contacts(env) if e == "conv@x.io") == 1


@pytest.mark.parametrize(("winner", "first_name"), [("crm", "CrmNew"), ("hub", "HubNew")])
def test_record_pending_on_both_sides(env: Env, winner: str, first_name: str) -> None:
    crit = 'criteria = { field = "LastName", op = "=", value = "Both" }'
    d = start(
        env,
        FAST_HUB + f'\n[sync]\nconflict_winner = "{winner}"\n'
        f'[sync.objects.contact]\nselection = "criteria"\n{crit}\n',
    )
    rec = env.sb.run(
        lambda: env.sf.insert(
            "Contact", {"LastName": "Both", "FirstName": "Crm0", "Email": "both@x.io"}
        )
    )
    assert pull(d)["processed"] == 1
    hub_id = int(env.sb.run(lambda: env.ac.by_email["both@x.io"]))

    # The CRM changes FirstName; the hub is down, so that change waits as a pending entry.
    def crm_edit() -> None:
        env.sf.records["Contact"][rec["Id"]]["FirstName"] = "CrmNew"
        env.sf.records["Contact"][rec["Id"]]["SystemModstamp"] = now_utc()

    env.sb.run(crm_edit)
    env.sb.run(
        lambda: env.ac.faults.apply({"fail_ratio": 1.0, "status": 503, "fail_paths": ["/api/3/"]})
    )
    assert pull(d)["processed"] == 0
    assert queue_counts(d, "outbound").get("pending") == 1
    # The hub comes back; meanwhile a person changed FirstName there too, and Phone, which
    # the CRM left empty.
    env.sb.run(lambda: env.ac.faults.apply({"fail_ratio": 0.0}))
    status, _ = ac_webhook(
        env,
        d,
        hub_id,
        email="both@x.io",
        first="HubNew",
        last="Both",
        tags="created-from-salesforce-contact",
        fields={"phone": "555"},
    )
    assert status == 200
    status, body = d.json("POST", "/api/v1/flush?wait=true")
    assert status == 200 and body["counts"]["processed"] == 1
    [contact] = [c for c in sf_records(env, "Contact") if c["Email"] == "both@x.io"]
    assert contact["FirstName"] == first_name
    assert contact["Phone"] == "555"  # the winner's value was empty: the other side's is kept


def test_accounts_and_opportunities_when_enabled(env: Env) -> None:
    d = start(
        env,
        '\n[sync.objects.account]\nenabled = true\nselection = "all_new"\n'
        '[sync.objects.opportunity]\nenabled = true\nselection = "all_new"\n',
    )
    pull(d, "account")
    pull(d, "opportunity")

    def seed() -> None:
        env.sf.insert("Account", {"Name": "Initech"})
        env.sf.insert(
            "Opportunity",
            {
                "Name": "Big deal",
                "Amount": 1234.5,
                "StageName": "Proposal",
                "CloseDate": "2026-12-31",
            },
        )

    env.sb.run(seed)
    assert pull(d, "account")["processed"] == 1
    assert pull(d, "opportunity")["processed"] == 1
    accounts = env.sb.run(lambda: [dict(a) for a in env.ac.accounts.values()])
    deals = env.sb.run(lambda: [dict(x) for x in env.ac.deals.values()])
    assert [a["name"] for a in accounts] == ["Initech"]
    assert [(x["title"], int(x["value"])) for x in deals] == [("Big deal", 123450)]


def test_a_change_in_the_cursors_second_is_pulled_without_overlap(env: Env) -> None:
    """SystemModstamp has whole seconds: with no overlap window at all, a record changed
    later in the second the last pull ended at still reaches the hub."""
    crit = 'criteria = { field = "LastName", op = "starts_with", value = "Sec" }'
    d = start(
        env,
        '\n[outbound]\noverlap_seconds = 0\n[sync.objects.contact]\nselection = "criteria"\n'
        + crit
        + "\n",
    )
    second = now_utc() - timedelta(seconds=30)
    env.sb.run(
        lambda: env.sf.insert("Contact", {"LastName": "Sec1", "Email": "sec1@x.io"}, at=second)
    )
    assert pull(d)["processed"] == 1
    # Saved after that pull, within the same second (the simulator keeps it to the second).
    env.sb.run(
        lambda: env.sf.insert(
            "Contact",
            {"LastName": "Sec2", "Email": "sec2@x.io"},
            at=second + timedelta(milliseconds=800),
        )
    )
    counts = pull(d)
    assert counts["processed"] >= 1, counts
    assert {"sec1@x.io", "sec2@x.io"} <= set(ac_contacts(env))

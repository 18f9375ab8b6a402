"""dbsync against a real MariaDB table and the ActiveCampaign sandbox: every option, exact state."""

from __future__ import annotations

import asyncio

import pytest

from syncd.dbsync.pass_state import PRIOR
from syncd.dbsync.types import DbsyncBusy
from syncd.errors import ConfigError
from syncd.model import ErrorCategory, RunKind, RunTrigger
from tests.integration.dbsync_support import LIST_ID, Env, env

__all__ = ["env"]

ROWS = [
    (1, "ada@example.com", "Ada", "Lovelace", "Analytical", "vip, math;; early "),
    (2, "alan@example.com", "Alan", "Turing", "Bletchley", None),
    (3, "grace@example.com", "Grace", "Hopper", None, "navy"),
]


async def test_run_creates_contacts_with_fields_tags_and_list(env: Env) -> None:
    await env.insert(ROWS)
    before = await env.checksum()
    report = await env.runner.run(env.cfg(), RunTrigger.MANUAL)
    assert report.status == "succeeded", report.error
    c = report.counts
    assert (c["rows_read"], c["created"], c["updated"], c["skipped"], c["failed"]) == (
        3,
        3,
        0,
        0,
        0,
    )
    ada = env.contact("ada@example.com")
    assert ada is not None and (ada.first_name, ada.last_name) == ("Ada", "Lovelace")
    assert env.company("ada@example.com") == "Analytical"
    assert env.tags("ada@example.com") == {"vip", "math", "early"}
    assert env.tags("alan@example.com") == set()
    for email in ("ada@example.com", "alan@example.com", "grace@example.com"):
        assert env.status(email) == 1
        assert env.copies(email) == 1
    assert await env.checksum() == before
    run = await env.store.get_run(report.run_id)
    assert run is not None and run.status == "succeeded" and run.kind is RunKind.DBSYNC
    assert run.counts["created"] == 3 and run.finished_at is not None


async def test_unchanged_second_run_makes_no_write_calls(env: Env) -> None:
    await env.insert(ROWS)
    await env.runner.run(env.cfg(), RunTrigger.MANUAL)
    env.sb.reset()
    ledger = len(env.sb.ledger)
    report = await env.runner.run(env.cfg(), RunTrigger.MANUAL)
    assert report.counts["unchanged"] == 3 and report.counts["skipped"] == 3
    assert report.counts["created"] == report.counts["updated"] == 0
    assert len(env.sb.ledger) == ledger == 0
    assert env.write_requests() == 0
    assert report.counts["write_calls"] == 0
    # A changed row costs exactly its own write.
    await env.sql("UPDATE people SET first_name = 'Alan M.' WHERE id = 2")
    report = await env.runner.run(env.cfg(), RunTrigger.MANUAL)
    assert (report.counts["updated"], report.counts["unchanged"]) == (1, 2)
    assert env.contact("alan@example.com").first_name == "Alan M."  # type: ignore[union-attr]
    alan_id = str(env.contact("alan@example.com").id)  # type: ignore[union-attr]
    assert {e.record_id.split(":")[0] for e in env.sb.ledger} == {alan_id}


async def test_test_mode_writes_nothing_and_predicts_the_run(env: Env) -> None:
    await env.insert(ROWS)
    await env.insert([(4, "not-an-email", "X"), (5, None, "Nobody")])
    env.seed_contact("grace@example.com", "G")  # exists: would be updated, not created
    env.sb.reset()
    # By default a test asks the hub nothing per row: rows new to this dbsync are "new".
    quick = await env.runner.test(env.cfg())
    assert quick.counts["api_calls"] <= 1  # the field list, once
    assert (quick.counts["new"], quick.counts["created"], quick.counts["updated"]) == (3, 0, 0)
    predicted = await env.runner.test(env.cfg(), exact=True)
    assert predicted.counts["api_calls"] >= 3  # one lookup per new row on ActiveCampaign
    assert env.write_requests() == 0 and env.sb.ledger == []
    assert env.contact("ada@example.com") is None
    assert predicted.mode == "test" and predicted.status == "succeeded"
    assert {f.key for f in predicted.first_failures} == {"4", "5"}
    real = await env.runner.run(env.cfg(), RunTrigger.MANUAL)
    keys = ("rows_read", "new", "created", "updated", "skipped", "deleted", "failed", "duplicates")
    assert {k: predicted.counts[k] for k in keys} == {k: real.counts[k] for k in keys}
    same = ("rows_read", "new", "skipped", "deleted", "failed", "duplicates")
    assert {k: quick.counts[k] for k in same} == {k: real.counts[k] for k in same}
    assert (real.counts["created"], real.counts["updated"], real.counts["failed"]) == (2, 1, 2)
    test_run = await env.store.get_run(predicted.run_id)
    assert test_run is not None and test_run.kind is RunKind.DBSYNC_TEST
    # After the run, a default test knows every row: what changed would be updated.
    await env.sql("UPDATE people SET first_name = 'Changed' WHERE id = 1")
    again = await env.runner.test(env.cfg())
    assert (again.counts["new"], again.counts["updated"], again.counts["skipped"]) == (0, 1, 2)


async def test_update_existing_off_leaves_existing_contacts_alone(env: Env) -> None:
    await env.insert(ROWS)
    env.seed_contact("alan@example.com", "Old")
    cfg = env.cfg(update_existing=False)
    report = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert (report.counts["created"], report.counts["skipped_existing"]) == (2, 1)
    alan = env.contact("alan@example.com")
    assert alan is not None and alan.first_name == "Old" and env.status("alan@example.com") is None
    assert env.company("alan@example.com") is None
    # Remembered: the next run costs nothing for it, even after its row changed.
    await env.sql("UPDATE people SET first_name = 'New' WHERE id = 2")
    env.sb.reset()
    report = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert report.counts["skipped_existing"] == 1 and env.write_requests() == 0
    assert env.contact("alan@example.com").first_name == "Old"  # type: ignore[union-attr]
    # Turned on, the existing contact gets the values and joins the list.
    report = await env.runner.run(env.cfg(update_existing=True), RunTrigger.MANUAL)
    assert report.counts["updated"] == 1
    assert env.contact("alan@example.com").first_name == "New"  # type: ignore[union-attr]
    assert env.status("alan@example.com") == 1


async def test_update_existing_on_updates_and_unsubscribed_stays_unsubscribed(env: Env) -> None:
    await env.insert(ROWS)
    env.seed_contact("alan@example.com", "Old", status=2)
    report = await env.runner.run(env.cfg(update_existing=True), RunTrigger.MANUAL)
    assert report.status == "succeeded"
    assert env.contact("alan@example.com").first_name == "Alan"  # type: ignore[union-attr]
    assert env.status("alan@example.com") == 2
    assert env.copies("alan@example.com") == 1


async def test_unsubscribed_stays_unsubscribed_through_bulk_import(env: Env) -> None:
    rows = [(i, f"bulk{i}@example.com", f"N{i}") for i in range(1, 41)]
    await env.insert(rows)
    env.seed_contact("bulk7@example.com", "Old", status=2)
    report = await env.runner.run(env.cfg(), RunTrigger.MANUAL)
    assert report.counts["failed"] == 0 and report.counts["rows_read"] == 40
    assert any(e.endpoint.endswith("bulk_import") for e in env.sb.ledger)
    assert env.status("bulk7@example.com") == 2
    assert env.contact("bulk7@example.com").first_name == "N7"  # type: ignore[union-attr]
    assert all(env.status(f"bulk{i}@example.com") == 1 for i in range(1, 41) if i != 7)


async def test_bulk_import_rows_taken_off_and_back_and_existing_ones_never_deleted(
    env: Env,
) -> None:
    # Over the bulk import threshold: "created" comes from AC's highest contact id before
    # the import, so the contact that existed before is known and only taken off the list.
    rows = [(i, f"bulk{i}@example.com", f"N{i}") for i in range(1, 61)]
    await env.insert(rows)
    env.seed_contact("bulk7@example.com", "Old", status=1)
    cfg = env.cfg(delete_missing=True, delete_safety_threshold=0.3)
    first = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert any(e.endpoint.endswith("bulk_import") for e in env.sb.ledger)
    assert (first.counts["created"], first.counts["updated"]) == (59, 1)
    await env.sql("DELETE FROM people WHERE id <= 30")
    report = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert report.counts["deleted"] == 30
    assert all(env.contact(f"bulk{i}@example.com") is None for i in range(1, 31) if i != 7)
    assert env.contact("bulk7@example.com") is not None and env.status("bulk7@example.com") == 2
    await env.insert(rows[:30])
    env.sb.reset()
    back = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert back.status == "succeeded", back.error
    assert any(e.endpoint.endswith("bulk_import") for e in env.sb.ledger)
    assert back.counts["created"] == 30
    # Re-created (29) and put back on the list (bulk7, which the import left unsubscribed).
    assert all(env.status(f"bulk{i}@example.com") == 1 for i in range(1, 61))
    assert env.copies("bulk7@example.com") == 1


@pytest.mark.parametrize("ending", ["failed", "interrupted"])
async def test_an_import_ac_gives_up_on_fails_its_rows_and_the_rerun_sends_them(
    env: Env, ending: str
) -> None:
    """AC ends one import as failed or interrupted (and never retries it): the run does not
    hang, its rows are recorded as failed with AC's word for it, the other imports' rows
    are synced with the right contact ids, and the next run sends only the failed rows."""
    rows = [(i, f"imp{i}@example.com", f"N{i}") for i in range(1, 76)]
    await env.insert(rows)
    env.seed_contact("imp30@example.com", "Old")  # one existed: updated, not created
    env.sb.apply_faults({"import_outcome": ending, "import_outcome_next": 1})
    cfg = env.cfg(batch_size=25)
    report = await env.runner.run(cfg, RunTrigger.MANUAL)
    c = report.counts
    assert (c["failed"], c["created"] + c["updated"]) == (25, 50), report.error
    failures = await env.store.run_failures(report.run_id)
    assert len(failures) == 25
    assert all(f"ended '{ending}'" in f.reason for f in failures)
    assert {f.category for f in failures} == {ErrorCategory.TRANSIENT}
    failed_emails = {f"imp{f.key}@example.com" for f in failures}
    stored = await env.store.dbsync_rows("people", [f"imp{i}@example.com" for i in range(1, 76)])
    assert set(stored).isdisjoint(failed_emails) and len(stored) == 50
    for email, row in stored.items():
        contact = env.contact(email)
        # No id is read back when nothing needs it (no delete, no broadcast); one given is right.
        assert contact is not None and row.hub_id in (None, str(contact.id)), email
    if "imp30@example.com" in stored:  # in an import that completed: known to have existed
        assert stored["imp30@example.com"].content_hash.startswith(PRIOR)
    again = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert again.counts["failed"] == 0 and again.counts["unchanged"] == 50
    assert again.counts["created"] + again.counts["updated"] == 25
    assert all(env.copies(f"imp{i}@example.com") == 1 for i in range(1, 76))
    assert all(env.status(f"imp{i}@example.com") == 1 for i in range(1, 76))


async def test_duplicates_make_one_contact_and_are_reported(env: Env) -> None:
    await env.insert(
        [
            (1, "dup@example.com", "First", None, None, "a"),
            (2, "  DUP@Example.com ", "Second", "Filled", "Co", "b"),
            (3, "dup@example.com", "Third", "Other", "Co3", None),
            (4, "solo@example.com", "Solo"),
            (8, "late@example.com", "Late1"),
            (9, "LATE@example.com", "Late2"),
        ]
    )
    # batch_size 2: later duplicates arrive in other batches than their first row.
    predicted = await env.runner.test(env.cfg(batch_size=2))
    report = await env.runner.run(env.cfg(batch_size=2), RunTrigger.MANUAL)
    assert (report.counts["created"], report.counts["duplicates"]) == (3, 3)
    assert predicted.counts["duplicates"] == 3 and predicted.counts["new"] == 3
    assert report.counts["failed"] == 0
    c = env.contact("dup@example.com")
    assert c is not None and (c.first_name, c.last_name) == ("First", "")
    assert env.tags("dup@example.com") == {"a"}
    assert env.contact("late@example.com").first_name == "Late1"  # type: ignore[union-attr]
    assert env.copies("dup@example.com") == 1 and env.copies("late@example.com") == 1
    failures = await env.store.run_failures(report.run_id)
    dups = [f for f in failures if f.category is ErrorCategory.DUPLICATE]
    assert sorted(f.key for f in dups) == ["2", "3", "9"]
    assert all("duplicate row" in f.reason for f in dups)
    # Duplicates stay duplicates on the next run, which costs nothing.
    env.sb.reset()
    again = await env.runner.run(env.cfg(batch_size=2), RunTrigger.MANUAL)
    assert (again.counts["duplicates"], again.counts["unchanged"]) == (3, 3)
    assert env.write_requests() == 0
    assert await env.store.count_dbsync_rows("~test" + str(predicted.run_id) + ":people") == 0


async def test_invalid_and_missing_values_are_reported_valid_rows_sync(env: Env) -> None:
    await env.insert(
        [
            (1, "ok@example.com", "Ok"),
            (2, "broken@", "Broken"),
            (3, None, "NoEmail"),
            (4, "   ", "Blank"),
            (5, "long@example.com", "x" * 300),
            (6, "fine@example.com", "Fine"),
        ]
    )
    report = await env.runner.run(env.cfg(), RunTrigger.MANUAL)
    assert (report.counts["created"], report.counts["failed"]) == (2, 4)
    failures = {f.key: f for f in await env.store.run_failures(report.run_id)}
    assert failures["2"].reason.startswith("invalid email") and failures["2"].columns == ("email",)
    assert failures["3"].reason == "missing required field: email"
    assert failures["4"].reason == "missing required field: email"
    assert "too long" in failures["5"].reason and failures["5"].columns == ("first_name",)
    assert failures["5"].category is ErrorCategory.VALIDATION
    assert env.contact("ok@example.com") and env.contact("fine@example.com")
    assert env.contact("long@example.com") is None


async def test_delete_missing_deletes_only_the_contacts_it_added(env: Env) -> None:
    await env.insert(ROWS)
    foreign = env.seed_contact("foreign@example.com", "F", status=1)
    env.seed_contact("alan@example.com", "Pre")  # in the hub before: updated, never deleted
    cfg = env.cfg(delete_missing=True, delete_safety_threshold=0.3)
    first = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert (first.counts["created"], first.counts["updated"]) == (2, 1)
    grace_id = env.contact("grace@example.com").id  # type: ignore[union-attr]
    await env.sql("DELETE FROM people WHERE id IN (2, 3)")
    predicted = await env.runner.test(cfg)
    report = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert report.status == "succeeded", report.error
    assert report.counts["deleted"] == predicted.counts["deleted"] == 2
    assert env.contact("grace@example.com") is None  # deleted, as AC's database sync does
    assert env.sb.contacts[grace_id].deleted
    assert env.contact("alan@example.com") is not None  # not ours to delete: off the list
    assert env.status("alan@example.com") == 2
    assert env.status("ada@example.com") == 1
    assert env.sb.memberships[(foreign, LIST_ID)]["status"] == 1
    assert env.contact("foreign@example.com") is not None
    # Nothing left to do: a third run touches nothing.
    env.sb.reset()
    again = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert again.counts["deleted"] == 0 and env.write_requests() == 0
    # The rows come back: synced again as new, on the list again.
    await env.insert(ROWS[1:])
    back = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert back.status == "succeeded", back.error
    assert back.counts["created"] == 2 and back.counts["unchanged"] == 1
    grace = env.contact("grace@example.com")
    assert grace is not None and grace.id != grace_id and grace.first_name == "Grace"
    assert env.status("grace@example.com") == 1 and env.status("alan@example.com") == 1
    assert env.copies("grace@example.com") == 2  # the deleted one stays flagged in AC
    assert env.copies("alan@example.com") == 1


async def test_a_refused_delete_is_reported_and_tried_again(env: Env) -> None:
    await env.insert(ROWS)
    cfg = env.cfg(delete_missing=True, delete_safety_threshold=0.3)
    await env.runner.run(cfg, RunTrigger.MANUAL)
    await env.sql("DELETE FROM people WHERE id IN (2, 3)")
    env.sb.faults.status, env.sb.faults.fail_paths = 422, ("/api/3/contacts/",)
    env.sb.faults.fail_next = 1  # the first DELETE /contacts/{id} is refused
    report = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert report.status == "succeeded", report.error
    assert (report.counts["deleted"], report.counts["failed"]) == (1, 1)
    (failure,) = await env.store.run_failures(report.run_id)
    assert failure.key == "alan@example.com" and "refused to delete" in failure.reason
    assert env.contact("alan@example.com") is not None
    assert env.contact("grace@example.com") is None
    again = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert (again.counts["deleted"], again.counts["failed"]) == (1, 0)
    assert env.contact("alan@example.com") is None


async def test_delete_missing_unsubscribe_action_and_the_row_coming_back(env: Env) -> None:
    await env.insert(ROWS)
    cfg = env.cfg(
        delete_missing=True, delete_missing_action="unsubscribe", delete_safety_threshold=0.3
    )
    await env.runner.run(cfg, RunTrigger.MANUAL)
    grace_id = env.contact("grace@example.com").id  # type: ignore[union-attr]
    alan_id = env.contact("alan@example.com").id  # type: ignore[union-attr]
    env.sb.set_membership(alan_id, LIST_ID, 2, keep_unsub=False)  # Alan unsubscribes himself
    await env.sql("DELETE FROM people WHERE id IN (2, 3)")
    report = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert report.counts["deleted"] == 2
    assert env.contact("grace@example.com") is not None  # kept, taken off the list
    assert env.status("grace@example.com") == 2 and env.status("alan@example.com") == 2
    again = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert again.counts["deleted"] == 0  # already off the list: not counted twice
    await env.insert(ROWS[1:])
    back = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert back.status == "succeeded", back.error
    # Grace, whom dbsync took off, is back on the list, the same contact; Alan, who
    # unsubscribed on his own, stays unsubscribed.
    assert env.status("grace@example.com") == 1
    assert env.contact("grace@example.com").id == grace_id  # type: ignore[union-attr]
    assert env.copies("grace@example.com") == 1
    assert env.status("alan@example.com") == 2
    assert back.counts["created"] == 1 and back.counts["updated"] == 1
    env.sb.reset()
    settled = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert settled.counts["unchanged"] == 3 and env.write_requests() == 0


async def test_delete_missing_honours_the_safety_threshold(env: Env) -> None:
    await env.insert([(i, f"p{i}@example.com", f"P{i}") for i in range(1, 11)])
    cfg = env.cfg(delete_missing=True, delete_safety_threshold=0.5)
    await env.runner.run(cfg, RunTrigger.MANUAL)
    await env.sql("DELETE FROM people WHERE id > 4")  # 4 of 10 left: below 50 %
    report = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert report.status == "succeeded" and report.counts["deleted"] == 0
    assert report.counts["delete_refused"] == 6
    assert report.note is not None and "refused" in report.note and "10 rows" in report.note
    assert all(env.status(f"p{i}@example.com") == 1 for i in range(1, 11))
    run = await env.store.get_run(report.run_id)
    assert run is not None and run.error is not None and "refused" in run.error
    # The refused run still succeeded, so the next one compares against its 4 rows.
    report = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert report.counts["deleted"] == 6
    assert all(env.contact(f"p{i}@example.com") is None for i in range(5, 11))
    assert all(env.status(f"p{i}@example.com") == 1 for i in range(1, 5))


async def test_null_clears_the_hub_field_unless_turned_off(env: Env) -> None:
    await env.insert(ROWS)
    await env.runner.run(env.cfg(), RunTrigger.MANUAL)
    assert env.company("ada@example.com") == "Analytical"
    await env.sql("UPDATE people SET company = NULL, last_name = NULL WHERE id = 1")
    kept = await env.runner.run(env.cfg(null_clears=False), RunTrigger.MANUAL)
    # Ada's row changed; Grace's NULL company is no longer sent, so her row is sent once more.
    assert kept.counts["updated"] == 2
    ada = env.contact("ada@example.com")
    assert ada is not None and ada.last_name == "Lovelace"
    assert env.company("ada@example.com") == "Analytical"
    cleared = await env.runner.run(env.cfg(), RunTrigger.MANUAL)
    assert cleared.counts["updated"] == 2
    ada = env.contact("ada@example.com")
    assert ada is not None and ada.last_name == "" and ada.first_name == "Ada"
    assert env.company("ada@example.com") == ""
    env.sb.reset()
    settled = await env.runner.run(env.cfg(), RunTrigger.MANUAL)
    assert settled.counts["unchanged"] == 3 and env.write_requests() == 0


async def test_send_last_broadcast_goes_to_new_contacts_only(env: Env) -> None:
    await env.insert(ROWS)
    env.seed_contact("alan@example.com", "Pre", status=1)
    report = await env.runner.run(env.cfg(send_last_broadcast=True), RunTrigger.MANUAL)
    assert (report.counts["created"], report.counts["updated"]) == (2, 1)
    sent = {env.sb.contacts[c].email for (_, _, c) in env.sb.broadcasts}
    assert sent == {"ada@example.com", "grace@example.com"}


async def test_one_run_at_a_time(env: Env) -> None:
    await env.insert(ROWS)
    run_id = await env.runner.begin(env.cfg(), RunTrigger.MANUAL)
    with pytest.raises(DbsyncBusy) as busy:
        await env.runner.begin(env.cfg(), RunTrigger.MANUAL)
    assert busy.value.run_id == run_id
    # Another instance sharing the store is refused too, and learns the run id.
    from syncd.dbsync.component import default_source
    from syncd.dbsync.runner import DbsyncRunner

    other = DbsyncRunner(env.store, env.hub, default_source, owner="other", lock_ttl=5.0)
    with pytest.raises(DbsyncBusy) as busy:
        await other.begin(env.cfg(), RunTrigger.MANUAL)
    assert busy.value.run_id == run_id
    report = await env.runner.execute(env.cfg(), run_id)
    assert report.status == "succeeded"
    assert (await other.run(env.cfg(), RunTrigger.MANUAL)).counts["unchanged"] == 3


async def test_unknown_columns_are_config_errors(env: Env) -> None:
    await env.insert(ROWS)
    bad_rule = env.cfg(rules={"field": "nope", "op": "=", "value": 1})
    report = await env.runner.run(bad_rule, RunTrigger.MANUAL)
    assert report.status == "failed" and "unknown column 'nope'" in (report.error or "")
    bad_map = env.cfg(mapping={"email": "email", "missing_col": "firstName"})
    report = await env.runner.run(bad_map, RunTrigger.MANUAL)
    assert report.status == "failed" and "missing_col" in (report.error or "")
    bad_field = env.cfg(mapping={"email": "email", "first_name": "NO_SUCH_FIELD"})
    report = await env.runner.run(bad_field, RunTrigger.MANUAL)
    assert report.status == "failed" and "NO_SUCH_FIELD" in (report.error or "")
    assert env.sb.ledger == []
    assert isinstance(ConfigError("x"), Exception)


async def test_a_run_that_lost_its_lock_to_another_instance_writes_nothing(env: Env) -> None:
    await env.insert(ROWS)
    cfg = env.cfg()
    r = env.runner
    run_id = await r.begin(cfg, RunTrigger.MANUAL)
    # This instance stalled past the lock's time to live: another took the dbsync over.
    await env.store.release_job_lock(r._lock(cfg.name), r.owner)
    assert await env.store.try_job_lock(r._lock(cfg.name), "other", 600)
    report = await r.execute(cfg, run_id)
    assert report.status == "failed"
    assert report.error is not None and "another instance took the job over" in report.error
    assert all(env.contact(email) is None for _, email, *_ in ROWS)
    # The other instance's lock is left alone.
    assert not await env.store.try_job_lock(r._lock(cfg.name), r.owner, 60)


async def test_a_cancelled_run_records_every_row_the_hub_accepted(env: Env) -> None:
    """Cancelled mid-run: no more calls start, those in flight land and are recorded, so
    every contact the run made is known and the next run makes only the rest."""
    await env.insert([(i, f"cancel{i}@example.com", f"F{i}") for i in range(1, 3001)])
    cfg = env.cfg(batch_size=50, update_existing=False)
    run_id = await env.runner.begin(cfg, RunTrigger.MANUAL)
    task = asyncio.create_task(env.runner.execute(cfg, run_id))
    for _ in range(3000):
        await asyncio.sleep(0.01)
        if len(env.sb.contacts) >= 300 or task.done():
            break
    assert env.runner.cancel(run_id, "cancelled by the operator")
    report = await task
    assert report.status == "interrupted" and report.error == "cancelled by the operator"
    made = sum(1 for c in env.sb.contacts.values() if c.email.startswith("cancel"))
    assert 0 < made < 3000
    assert await env.store.count_dbsync_rows("people") == made
    rest = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert (rest.counts["created"], rest.counts["skipped_existing"]) == (3000 - made, 0)
    assert rest.counts["unchanged"] == made


async def test_a_table_of_existing_contacts_reads_no_ids_and_never_deletes_them(
    env: Env,
) -> None:
    """Every row's person already in the hub: the import created none of them, which its
    answer says without any read of contact ids; each is stored as there before, so when its
    row leaves the table delete_missing, finding the contact by its email, only takes it
    off the list."""
    people = [(i, f"was{i}@example.com", f"W{i}") for i in range(1, 31)]
    seeded = {email: env.seed_contact(email) for _, email, _ in people}
    await env.insert(people)
    env.sb.reset()
    report = await env.runner.run(env.cfg(), RunTrigger.MANUAL)
    assert report.status == "succeeded", report.error
    assert (report.counts["created"], report.counts["updated"]) == (0, 30)
    assert env.sb.requests.get("GET /api/3/contacts", 0) == 0  # no id read back
    stored = await env.store.dbsync_rows("people", [e for _, e, _ in people])
    assert all(r.content_hash.startswith(PRIOR) for r in stored.values())
    assert env.contact("was7@example.com").first_name == "W7"  # type: ignore[union-attr]

    await env.sql("DELETE FROM people WHERE id = 7")
    cfg = env.cfg(delete_missing=True, delete_safety_threshold=0.3)
    gone = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert gone.status == "succeeded", gone.error
    assert gone.counts["deleted"] == 1
    kept = env.contact("was7@example.com")
    assert kept is not None and kept.id == seeded["was7@example.com"]  # never deleted
    assert env.status("was7@example.com") == 2  # taken off the list
    assert env.status("was8@example.com") == 1


async def test_a_contact_recreated_by_a_run_replaces_the_stored_one(env: Env) -> None:
    """A user deleted a contact dbsync made; the row's next change re-creates it, in an
    import that creates all of its rows (no id read back). The stored id must not stay the
    deleted contact's: delete_missing would 'delete' that one (gone: counted as done) and
    leave the new contact behind for good."""
    await env.insert([(1, "ada@example.com", "Ada"), (2, "alan@example.com", "Alan")])
    assert (await env.runner.run(env.cfg(), RunTrigger.MANUAL)).status == "succeeded"
    old = env.contact("alan@example.com")
    assert old is not None
    env.sb.delete_contact(old)
    await env.sql("UPDATE people SET first_name = 'Alan M.' WHERE id = 2")
    await env.insert([(100 + i, f"n{i}@example.com", "N") for i in range(25)])
    again = await env.runner.run(env.cfg(), RunTrigger.MANUAL)
    assert again.status == "succeeded", again.error
    new = env.contact("alan@example.com")
    assert new is not None and new.id != old.id and new.first_name == "Alan M."
    stored = (await env.store.dbsync_rows("people", ["alan@example.com"]))["alan@example.com"]
    assert stored.hub_id in (None, str(new.id))

    await env.sql("DELETE FROM people WHERE id = 2")
    cfg = env.cfg(delete_missing=True, delete_safety_threshold=0.3)
    gone = await env.runner.run(cfg, RunTrigger.MANUAL)
    assert gone.status == "succeeded", gone.error
    assert env.contact("alan@example.com") is None  # the contact dbsync re-created: deleted
    assert gone.counts["deleted"] == 1

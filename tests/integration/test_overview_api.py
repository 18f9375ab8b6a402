"""Admin API of the overview over a real SQLite store: queue, detail, delete, retry, health,
records, restore, integration errors."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.model import Direction, EntryStatus, ErrorCategory, ObjectType, RunKind, RunTrigger
from syncd.store.protocols import StateStore
from syncd.store.types import RecordLink
from tests.integration.overview_support import LiveApp, Seeded, change, seed, seed_links


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveApp]:
    app = LiveApp(tmp_path, engine=True)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def seeded(live: LiveApp) -> Seeded:
    return live.run(seed(live.store))


def ids(body: dict[str, object]) -> list[int]:
    return [e["id"] for e in body["entries"]]  # type: ignore[index, union-attr]


def test_list_newest_first_with_columns(live: LiveApp, seeded: Seeded) -> None:
    status, body = live.json("GET", "/api/v1/queue?limit=500")
    assert status == 200
    got = ids(body)
    assert got == sorted(got, reverse=True)
    assert len(got) == 50
    row = body["entries"][0]
    for col in (
        "name",
        "email",
        "object",
        "direction",
        "status",
        "created_at",
        "updated_at",
        "attempts",
        "error_category",
    ):
        assert col in row
    assert body["next_cursor"] is None


def test_filters(live: LiveApp, seeded: Seeded) -> None:
    def q(query: str) -> list[int]:
        status, body = live.json("GET", "/api/v1/queue?limit=500&" + query)
        assert status == 200, body
        return ids(body)

    assert sorted(q("status=error")) == sorted(seeded.error)
    assert sorted(q("status=error,excluded")) == sorted(seeded.error + seeded.excluded)
    assert sorted(q("status=processed")) == sorted(seeded.processed)
    assert len(q("direction=outbound")) == 10
    assert len(q("source=pull")) == 10
    assert all(i in seeded.pending for i in q("direction=outbound"))
    assert sorted(q("error_category=validation")) == sorted(seeded.error)
    leads = q("object=lead")
    assert leads and len(leads) == 10  # every fifth of 40 inbound + 10 outbound
    assert len(q("q=PERSON13@")) == 1
    assert len(q("q=lovelace1000")) == 10  # the outbound names Lovelace10000..10009
    future = "2999-01-01T00:00:00Z"
    assert q(f"created_after={future}") == []
    assert len(q(f"created_before={future}")) == 50
    assert q(f"updated_after={future}") == []
    assert len(q("updated_before=2999-01-01T00:00:00")) == 50


@pytest.mark.parametrize(
    "query",
    [
        "status=bogus",
        "object=planet",
        "direction=up",
        "created_after=yesterday",
        "limit=0",
        "limit=501",
        "before=-3",
        "error_category=nope",
    ],
)
def test_bad_filters_are_400(live: LiveApp, query: str) -> None:
    status, body = live.json("GET", "/api/v1/queue?" + query)
    assert status == 400
    assert body["error"]


def test_detail_of_processed_error_and_excluded(live: LiveApp, seeded: Seeded) -> None:
    _, done = live.json("GET", f"/api/v1/queue/{seeded.processed[0]}")
    assert done["status"] == "processed"
    assert done["payload"]["email"] == done["email"]
    assert done["transferred_fields"]["Email"] == done["email"]
    assert done["transferred"]["object"] == done["object"]
    assert "Phone" in done["skipped_fields"]
    assert done["error"] is None

    _, err = live.json("GET", f"/api/v1/queue/{seeded.error[0]}")
    assert err["error"]["category"] == "validation"
    assert err["error"]["code"] == "REQUIRED_FIELD_MISSING"
    assert "LastName" in err["error"]["message"]
    assert "'LastName'" in err["error"]["hint"]

    _, exc = live.json("GET", f"/api/v1/queue/{seeded.excluded[0]}")
    assert exc["excluded_reason"].startswith("untagged")
    assert live.json("GET", "/api/v1/queue/999999")[0] == 404
    assert live.json("GET", "/api/v1/queue/abc")[0] == 404


def test_delete_pending_only(live: LiveApp, seeded: Seeded) -> None:
    for eid, status in (
        (seeded.processed[0], "processed"),
        (seeded.error[0], "error"),
        (seeded.excluded[0], "excluded"),
    ):
        code, body = live.json("DELETE", f"/api/v1/queue/{eid}")
        assert code == 409
        assert body["entry_status"] == status
        assert body["error"]
    code, body = live.json("DELETE", f"/api/v1/queue/{seeded.processed[0]}")
    assert "target system" in body["error"]
    victim = seeded.pending[0]
    assert live.json("DELETE", f"/api/v1/queue/{victim}") == (200, {"deleted": victim})
    assert live.json("GET", f"/api/v1/queue/{victim}")[0] == 404
    assert live.json("DELETE", f"/api/v1/queue/{victim}")[0] == 404


def test_retry_one_selection_and_filter(live: LiveApp, seeded: Seeded) -> None:
    one = seeded.error[0]
    assert live.json("POST", f"/api/v1/queue/{one}/retry")[1] == {"retried": 1, "flush": "next"}
    assert live.json("GET", f"/api/v1/queue/{one}")[1]["status"] == "pending"
    code, body = live.json("POST", f"/api/v1/queue/{seeded.processed[0]}/retry")
    assert code == 409 and body["entry_status"] == "processed"

    sel = seeded.error[1:4]
    code, body = live.json("POST", "/api/v1/queue/retry", {"ids": [*sel, seeded.processed[0]]})
    assert code == 200 and body["retried"] == 3
    rest = seeded.error[4:]
    objects = [live.json("GET", f"/api/v1/queue/{e}")[1]["object"] for e in rest]
    code, body = live.json("POST", "/api/v1/queue/retry?object=lead")
    assert code == 200 and body["retried"] == objects.count("lead")
    code, body = live.json("POST", "/api/v1/queue/retry")
    assert body["retried"] == objects.count("contact")
    _, body = live.json("GET", "/api/v1/queue?status=error")
    assert body["entries"] == []
    assert live.json("POST", "/api/v1/queue/retry", {})[1]["retried"] == 0
    assert live.json("POST", "/api/v1/queue/retry", {"ids": ["x"]})[0] == 400
    assert live.json("POST", "/api/v1/queue/retry?object=planet")[0] == 400


def test_retry_all_errors_now_reaches_processed(live: LiveApp) -> None:
    """Errors from a failing CRM go back to pending and are processed once it stops failing."""
    assert live.engine is not None
    live.crm.reject = {f"person{i}@example.com" for i in range(6)}
    changes = [change(i) for i in range(1, 6)]
    for c in changes:  # the hub holds what its webhooks describe
        live.hub.records[c.record_key] = dict(c.fields)
    live.run(live.store.enqueue(changes))
    live.json("POST", "/api/v1/flush?wait=true")
    _, body = live.json("GET", "/api/v1/queue?status=error")
    failed = ids(body)
    assert len(failed) == 5
    assert all(e["error_category"] == "validation" for e in body["entries"])
    detail = live.json("GET", f"/api/v1/queue/{failed[0]}")[1]
    assert detail["error"]["code"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert "'Phone'" in detail["error"]["hint"]
    live.crm.reject = set()
    code, out = live.json("POST", "/api/v1/queue/retry?now=true&status=error")
    assert code == 200 and out == {"retried": 5, "flush": "requested"}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        _, body = live.json("GET", "/api/v1/queue?status=processed")
        if len(body["entries"]) == 5:
            break
        time.sleep(0.05)
    assert len(body["entries"]) == 5
    detail = live.json("GET", f"/api/v1/queue/{failed[0]}")[1]
    assert detail["transferred_fields"]["Email"] == detail["email"]


def test_integration_errors_everywhere(live: LiveApp, seeded: Seeded) -> None:
    live.run(
        live.store.set_integration_error(
            Direction.OUTBOUND, ErrorCategory.AUTH, "refresh token revoked"
        )
    )
    _, body = live.json("GET", "/api/v1/integration-errors")
    (err,) = body["errors"]
    assert err["direction"] == "outbound" and err["category"] == "auth"
    assert err["since"] and "reconnect" in err["hint"]
    assert live.json("GET", "/api/v1/queue")[1]["integration_errors"] == body["errors"]
    assert live.json("GET", "/api/v1/health")[1]["integration_errors"] == body["errors"]


def test_health(live: LiveApp, seeded: Seeded) -> None:
    live.run(seed_links(live.store))
    _, h = live.json("GET", "/api/v1/health")
    c = h["objects"]["contact"]
    assert c["synced"] == 6
    assert c["failing"]["total"] == 10
    assert c["failing"]["by_category"][0]["category"] == "validation"
    assert c["failing"]["by_category"][0]["hint"]
    assert c["excluded"]["by_group"] == {"untagged": 10}
    assert c["pending"] + h["objects"]["lead"]["pending"] == len(seeded.pending)
    (crm,) = [x for x in h["connectors"] if x["side"] == "crm"]
    assert crm["quota_used"] == 1234 and crm["quota_limit"] == 15000
    assert crm["quota_percent"] == 8.2
    assert h["latest_runs"] == []


async def some_runs(store: StateStore) -> None:
    for kind, name, status in (
        (RunKind.DBSYNC, "customers", "failed"),
        (RunKind.DBSYNC, "customers", "succeeded"),
        (RunKind.DBSYNC, "members", "succeeded"),
        (RunKind.PULL, "contact", "succeeded"),
        (RunKind.FLUSH, None, "succeeded"),
        (RunKind.FLUSH, None, "succeeded"),
    ):
        rid = await store.start_run(kind, RunTrigger.MANUAL, name=name)
        await store.finish_run(rid, counts={"processed": 3, "errors": 0}, status=status)


def test_health_shows_the_latest_flush_pull_and_dbsync_runs(live: LiveApp) -> None:
    live.run(some_runs(live.store))
    _, h = live.json("GET", "/api/v1/health")
    got = [(r["kind"], r["name"], r["status"], r["id"]) for r in h["latest_runs"]]
    assert got == [
        ("flush", None, "succeeded", 6),
        ("pull", "contact", "succeeded", 4),
        ("dbsync", "members", "succeeded", 3),
        ("dbsync", "customers", "succeeded", 2),
    ]
    assert h["latest_runs"][0]["counts"] == {"processed": 3, "errors": 0}
    status, raw, _ = live.request("GET", "/")
    assert status == 200 and b"Latest runs" in raw and b"dbsync customers" in raw


def test_records_paging_and_export(live: LiveApp) -> None:
    live.run(seed_links(live.store, 12))
    _, page1 = live.json("GET", "/api/v1/records?limit=5")
    _, page2 = live.json("GET", f"/api/v1/records?limit=5&after={page1['next_cursor']}")
    assert [r["id"] for r in page1["records"] + page2["records"]] == list(range(1, 11))
    _, deleted = live.json("GET", "/api/v1/records?deleted_side=crm")
    assert {r["hub_id"] for r in deleted["records"]} == {"5000", "5003", "5006", "5009"}
    status, raw, headers = live.request("GET", "/api/v1/records/export.csv?deleted_side=crm")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(raw.decode())))
    assert [r["hub_id"] for r in rows] == ["5000", "5003", "5006", "5009"]
    assert rows[0]["sync_tags"] == "added-to-salesforce-contact"
    status, raw, _ = live.request("GET", "/api/v1/records/export.json?q=linked1")
    assert [r["email"] for r in json.loads(raw)] == [
        "linked1@example.com",
        "linked10@example.com",
        "linked11@example.com",
    ]
    status, raw, _ = live.request("GET", "/api/v1/records/export.json?q=nobody")
    assert json.loads(raw) == []
    status, raw, _ = live.request("GET", "/api/v1/records/export.csv?q=nobody")
    assert (
        raw.decode().strip()
        == "id,object,hub_id,crm_id,email,name,sync_tags,status,deleted_side,deleted_at,"
        "last_synced_at"
    )


def test_restore_preview_then_one_then_all(live: LiveApp) -> None:
    link_ids = live.run(seed_links(live.store, 9))
    for i in range(9):
        live.hub.records[str(5000 + i)] = {
            "email": f"linked{i}@example.com",
            "firstName": "Linked",
            "lastName": f"Person{i}",
        }
    url = "/api/v1/records/restore?object=contact&to=crm"
    assert live.json("POST", url + "&dry_run=true")[1] == {"dry_run": True, "matching": 3}
    one = {"ids": [link_ids[3]]}
    code, out = live.json("POST", url + "&dry_run=true", one)
    assert out["matching"] == 1
    code, out = live.json("POST", url, one)
    assert code == 200 and out["restored"] == 1 and out["failed"] == []
    link = live.run(live.store.get_link(ObjectType.CONTACT, hub_id="5003"))
    assert link is not None and link.deleted_side is None
    assert live.crm.records[link.crm_id or ""]["Email"] == "linked3@example.com"
    assert live.crm.records[link.crm_id or ""]["Syncd_Hub_Id__c"] == "5003"
    code, out = live.json("POST", url)
    assert out["matching"] == 2 and out["restored"] == 2
    assert live.json("POST", url + "&dry_run=true")[1]["matching"] == 0
    assert live.json("POST", "/api/v1/records/restore?object=x&to=crm")[0] == 400
    assert live.json("POST", "/api/v1/records/restore?object=lead&to=y")[0] == 400


def test_statuses_all_reachable_in_fixture(live: LiveApp, seeded: Seeded) -> None:
    _, body = live.json("GET", "/api/v1/queue?limit=500")
    assert {e["status"] for e in body["entries"]} == {
        s.value for s in EntryStatus if s is not EntryStatus.PROCESSING
    }


def test_store_unreachable_is_an_integration_error(live: LiveApp, seeded: Seeded) -> None:
    live.run(live.store.close())
    code, body = live.json("GET", "/api/v1/integration-errors")
    assert code == 200
    (err,) = body["errors"]
    assert err["category"] == "store" and err["direction"] == "all" and err["since"]
    assert "nothing is lost" in err["hint"]
    since = err["since"]
    assert live.json("GET", "/api/v1/integration-errors")[1]["errors"][0]["since"] == since
    for path in ("/api/v1/queue", "/api/v1/health", f"/api/v1/queue/{seeded.error[0]}"):
        code, body = live.json("GET", path)
        assert code == 503 and "state store unavailable" in body["error"]
    status, raw, _ = live.request("GET", "/")
    assert status == 503 and b"integration-errors" in raw and b"store" in raw
    status, raw, _ = live.request("GET", f"/entry/{seeded.error[0]}")
    assert status == 503
    live.run(live.store.open())
    assert live.json("GET", "/api/v1/integration-errors")[1]["errors"] == []


def test_restore_on_the_hub_side(live: LiveApp) -> None:
    async def links() -> None:
        for i in range(3):
            await live.store.upsert_link(
                RecordLink(
                    object=ObjectType.CONTACT,
                    hub_id=str(7000 + i),
                    crm_id=f"003H{i:011d}",
                    email=f"hubgone{i}@example.com",
                    name=f"Hub Gone {i}",
                    sync_tags=frozenset({"created-from-salesforce-contact"}),
                    deleted_side="hub",
                )
            )

    live.run(links())
    for i in range(2):
        live.crm.records[f"003H{i:011d}"] = {
            "Email": f"hubgone{i}@example.com",
            "FirstName": "Hub",
            "LastName": f"Gone{i}",
        }
    url = "/api/v1/records/restore?object=contact&to=hub"
    assert live.json("POST", url + "&dry_run=1&q=hubgone1")[1]["matching"] == 1
    code, out = live.json("POST", url)
    assert code == 200 and out["matching"] == 3 and out["restored"] == 2
    assert out["failed"] == [
        {"id": 3, "error": "deleted on both sides and no base: nothing to restore"}
    ]
    link = live.run(live.store.get_link(ObjectType.CONTACT, crm_id="003H00000000000"))
    assert link is not None and link.deleted_side is None and link.hub_id not in (None, "7000")
    created = live.hub.records[link.hub_id or ""]
    assert created["email"] == "hubgone0@example.com" and created["lastName"] == "Gone0"
    assert created["tags"] == ["created-from-salesforce-contact"]


def test_csv_export_defuses_formulas(live: LiveApp) -> None:
    live.run(
        live.store.upsert_link(
            RecordLink(
                object=ObjectType.CONTACT,
                hub_id="1",
                crm_id="003F",
                email="x@example.com",
                name='=HYPERLINK("http://evil.example","click")',
            )
        )
    )
    _, raw, _ = live.request("GET", "/api/v1/records/export.csv")
    (row,) = list(csv.DictReader(io.StringIO(raw.decode())))
    assert row["name"] == '\'=HYPERLINK("http://evil.example","click")'
    _, raw, _ = live.request("GET", "/api/v1/records/export.json")
    assert json.loads(raw)[0]["name"].startswith("=HYPERLINK")

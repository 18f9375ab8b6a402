"""Records deleted on one side since they were linked: noticed, recorded on the link, and
(only when `sync.propagate_deletes` says so) deleted on the other side too.

Where each side's deletions are seen:

- Salesforce: each pull asks for the object's deletions since the last pull
  (``sobjects/{type}/deleted/``). Salesforce answers for the last 15 days only (its recycle
  bin; developer.salesforce.com "Get Deleted Records": ``earliestDateAvailable``); when syncd
  was away longer than that, the pull checks every linked record of the object by id (one
  query per 200) and marks those that are gone, as seen at that moment.
- HubSpot: the ``contact.deletion`` webhook (its flush finds the contact gone), the poll
  fallback's list of archived contacts, and any read of a linked contact that finds none.
- ActiveCampaign sends no webhook for a deleted contact: syncd notices when it next reads
  the contact (a flush, or a pull of its CRM record) and in the poll fallback's scan of
  contacts flagged deleted.

A record deleted on one side no longer syncs: its changes on the other side are excluded
with the reason until `syncd restore-deleted` re-creates it (see `restore`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from syncd import metrics
from syncd.config import Settings
from syncd.errors import IntegrationError
from syncd.logging import get_logger
from syncd.model import ObjectType
from syncd.store.protocols import StateStore
from syncd.store.types import LinkFilter, RecordLink
from syncd.vendors.protocols import CrmConnector, HubConnector

log = get_logger("syncd.deletions")
CRM_RETENTION = timedelta(days=15)  # Salesforce's deleted-records window (recycle bin)
_CHECK_BATCH = 200  # ids per Salesforce query when checking linked records one by one


def deleted_reason(link: RecordLink) -> str:
    """Why a record deleted on one side does not sync, and what brings it back."""
    side = "Salesforce" if link.deleted_side == "crm" else "the hub"
    when = f" on {link.deleted_at:%Y-%m-%d %H:%M} UTC" if link.deleted_at else ""
    return (
        f"deleted in {side}{when}: not synced; syncd restore-deleted --to "
        f"{link.deleted_side} re-creates it"
    )


def hub_object(obj: ObjectType) -> ObjectType:
    """What the hub keeps an object as (people are contacts there)."""
    return ObjectType.CONTACT if obj in (ObjectType.CONTACT, ObjectType.LEAD) else obj


class Deletions:
    """Marks links deleted and, when configured, deletes the other side's record."""

    def __init__(
        self,
        store: StateStore,
        crm: CrmConnector,
        hub: HubConnector | None,
        settings: Callable[[], Settings],
    ) -> None:
        self._store = store
        self._crm = crm
        self._hub = hub
        self._settings = settings

    async def seen(
        self, obj: ObjectType, side: str, ids: Sequence[str], at: datetime | None = None
    ) -> list[RecordLink]:
        """Records of `side` found deleted: their links are marked (and, with
        `propagate_deletes`, the other side's records deleted); the links newly marked."""
        if not ids:
            return []
        marked = await self._store.mark_deleted(obj, side, ids, at=at or datetime.now(UTC))
        for link in marked:
            metrics.RECORDS.labels(
                "outbound" if side == "crm" else "inbound", obj.value, "deleted"
            ).inc()
            log.info(
                "record_deleted", object=obj.value, side=side, hub=link.hub_id, crm=link.crm_id
            )
        if marked and self._settings().sync.propagate_deletes:
            await self._propagate(obj, side, marked)
        return marked

    async def _propagate(self, obj: ObjectType, side: str, links: list[RecordLink]) -> None:
        if side == "crm":
            if self._hub is None:
                return
            ids = [lk.hub_id for lk in links if lk.hub_id]
            results = await self._hub.delete(hub_object(obj), ids)
        else:
            ids = [lk.crm_id for lk in links if lk.crm_id]
            results = await self._crm.delete(obj, ids)
        failed = [(i, r.error_message) for i, r in zip(ids, results, strict=True) if not r.ok]
        for rid, message in failed:
            log.warning("propagate_delete_failed", object=obj.value, id=rid, error=message)
        other = "hub" if side == "crm" else "crm"
        log.info("deletes_propagated", object=obj.value, to=other, deleted=len(ids) - len(failed))

    async def from_crm(self, obj: ObjectType, since: str | None) -> int:
        """The CRM's deletions of `obj` since the last pull's; how many links were marked.

        `since` is where the pull's own cursor stood: the first look starts there."""
        name = f"deleted:{obj.value}"
        cursor = await self._store.get_cursor(name) or since
        now = datetime.now(UTC)
        marked = 0
        if cursor is not None and now - _parse(cursor) > CRM_RETENTION - timedelta(hours=1):
            # Salesforce no longer lists what was deleted that long ago: check each link.
            marked += await self._check_linked(obj, now)
        try:
            gone, covered = await self._crm.deleted_since(obj, cursor)
        except IntegrationError as exc:
            log.warning("deleted_records_unavailable", object=obj.value, error=str(exc))
            return marked
        by_time: dict[datetime | None, list[str]] = {}
        for d in gone:
            by_time.setdefault(d.deleted_at, []).append(d.id)
        for at, ids in by_time.items():
            marked += len(await self.seen(obj, "crm", ids, at))
        if covered:
            await self._store.set_cursor(name, covered)
        elif cursor is None:
            await self._store.set_cursor(name, now.isoformat())
        return marked

    async def _check_linked(self, obj: ObjectType, now: datetime) -> int:
        """Every linked record of `obj` read by id; those the CRM no longer has are marked."""
        marked = 0
        after: int | None = None
        fields = ["Id"]
        while True:
            links = await self._store.list_links(
                LinkFilter(object=obj, status="linked"), after_id=after, limit=_CHECK_BATCH
            )
            if not links:
                break
            after = links[-1].id
            ids = [lk.crm_id for lk in links if lk.crm_id and lk.deleted_side is None]
            found = {r.id for r in await self._crm.get_by_ids(obj, ids, fields=fields)}
            marked += len(await self.seen(obj, "crm", [i for i in ids if i not in found], now))
        log.info("deleted_check", object=obj.value, marked=marked)
        return marked


def _parse(cursor: str) -> datetime:
    try:
        at = datetime.fromisoformat(cursor.replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)
    return at if at.tzinfo else at.replace(tzinfo=UTC)

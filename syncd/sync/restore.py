"""Restore records deleted on one side since they were linked: re-create them from the other.

The surviving side is read through its connector, mapped with the object's mapping and
written to the deleted side; the link then points at the new record again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from syncd.config import Settings
from syncd.errors import ConfigError
from syncd.model import ObjectType, WriteItem, WriteOp
from syncd.store.protocols import StateStore
from syncd.store.types import LinkFilter, RecordLink
from syncd.sync.mapping import ObjectMapping, content_hash
from syncd.vendors.protocols import CrmConnector, HubConnector

BATCH = 100
# Hubs match people by email; companies and deals have no natural key there.
_HUB_MATCH = {ObjectType.CONTACT: "email", ObjectType.LEAD: "email"}


class Sides(Protocol):
    """The two connectors a restore reads from and writes to (the sync engine has both)."""

    @property
    def crm(self) -> CrmConnector:
        """The CRM connector."""

    @property
    def hub(self) -> HubConnector:
        """The hub connector."""


@dataclass(frozen=True)
class RestoreRequest:
    """Which deleted records to re-create, on which side, and whether only to count them."""

    object: ObjectType
    to: str
    ids: frozenset[int] = frozenset()
    text: str | None = None
    synced_after: datetime | None = None
    synced_before: datetime | None = None
    dry_run: bool = False

    @property
    def filter(self) -> LinkFilter:
        """The link filter: links of the object deleted on the `to` side."""
        return LinkFilter(
            object=self.object,
            deleted_side=self.to,
            text=self.text,
            synced_after=self.synced_after,
            synced_before=self.synced_before,
        )


@dataclass
class RestoreOutcome:
    """What a restore did: how many matched, were restored, and which failed with why."""

    matching: int = 0
    restored: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)


async def _candidates(store: StateStore, req: RestoreRequest) -> Any:
    after: int | None = None
    while True:
        rows = await store.list_links(req.filter, after_id=after, limit=BATCH)
        if not rows:
            return
        chosen = [r for r in rows if not req.ids or r.id in req.ids]
        if chosen:
            yield chosen
        after = rows[-1].id
        if len(rows) < BATCH:
            return


async def count_restorable(store: StateStore, req: RestoreRequest) -> int:
    """How many records the request would restore (the preview)."""
    if not req.ids:
        return await store.count_links(req.filter)
    n = 0
    async for batch in _candidates(store, req):
        n += len(batch)
    return n


async def restore_links(
    sides: Sides, settings: Settings, store: StateStore, req: RestoreRequest
) -> RestoreOutcome:
    """Re-create the matching records on the deleted side; relink them.

    ConfigError when the object is not configured."""
    obj_settings = settings.sync.objects.get(req.object)
    if obj_settings is None:
        raise ConfigError(f"object: {req.object.value} is not configured under [sync.objects]")
    mapping = ObjectMapping.from_settings(req.object, obj_settings)
    out = RestoreOutcome()
    async for batch in _candidates(store, req):
        out.matching += len(batch)
        if req.to == "crm":
            await _to_crm(sides, settings, store, mapping, batch, out)
        else:
            await _to_hub(sides, store, mapping, batch, out)
    return out


async def _to_crm(
    sides: Sides,
    settings: Settings,
    store: StateStore,
    mapping: ObjectMapping,
    links: Sequence[RecordLink],
    out: RestoreOutcome,
) -> None:
    obj = mapping.object
    usable = [link for link in links if link.hub_id]
    for link in links:
        if not link.hub_id:
            out.failed.append((link.id or 0, "no hub id on the link: nothing to restore from"))
    found = {r.id: r for r in await sides.hub.get_by_ids(obj, [lk.hub_id or "" for lk in usable])}
    ext = settings.crm.external_id_fields.get(obj) if settings.crm else None
    todo: list[tuple[RecordLink, WriteItem, str]] = []
    for link in usable:
        rec = found.get(link.hub_id or "")
        if rec is None:
            out.failed.append((link.id or 0, "deleted on both sides: nothing to restore from"))
            continue
        values = mapping.to_crm(dict(rec.fields))
        fields = dict(values)
        if ext:
            fields[ext] = link.hub_id
        todo.append((link, WriteItem(fields), content_hash(values)))
    if not todo:
        return
    op = WriteOp.UPSERT if ext else WriteOp.CREATE
    results = await sides.crm.write(obj, op, [t[1] for t in todo], match_field=ext)
    for (link, _, digest), res in zip(todo, results, strict=True):
        if not res.ok or not res.id:
            out.failed.append((link.id or 0, f"{res.error_code}: {res.error_message}"))
            continue
        await store.upsert_link(_relinked(link, hub_id=link.hub_id, crm_id=res.id, digest=digest))
        out.restored += 1


async def _to_hub(
    sides: Sides,
    store: StateStore,
    mapping: ObjectMapping,
    links: Sequence[RecordLink],
    out: RestoreOutcome,
) -> None:
    obj = mapping.object
    usable = [link for link in links if link.crm_id]
    for link in links:
        if not link.crm_id:
            out.failed.append((link.id or 0, "no CRM id on the link: nothing to restore from"))
    found = {
        r.id: r
        for r in await sides.crm.get_by_ids(
            obj, [lk.crm_id or "" for lk in usable], fields=mapping.crm_fields
        )
    }
    todo: list[tuple[RecordLink, WriteItem, str]] = []
    for link in usable:
        rec = found.get(link.crm_id or "")
        if rec is None:
            out.failed.append((link.id or 0, "deleted on both sides: nothing to restore from"))
            continue
        crm_values = {f: rec.fields.get(f) for f in mapping.crm_fields if f in rec.fields}
        fields = mapping.to_hub(crm_values)
        if link.sync_tags and obj in _HUB_MATCH:
            fields["tags"] = sorted(link.sync_tags)
        todo.append((link, WriteItem(fields), content_hash(crm_values)))
    if not todo:
        return
    results = await sides.hub.write(
        obj, WriteOp.UPSERT, [t[1] for t in todo], match_field=_HUB_MATCH.get(obj)
    )
    for (link, _, digest), res in zip(todo, results, strict=True):
        if not res.ok or not res.id:
            out.failed.append((link.id or 0, f"{res.error_code}: {res.error_message}"))
            continue
        await store.upsert_link(_relinked(link, hub_id=res.id, crm_id=link.crm_id, digest=digest))
        out.restored += 1


def _relinked(
    link: RecordLink, *, hub_id: str | None, crm_id: str | None, digest: str
) -> RecordLink:
    return RecordLink(
        object=link.object,
        hub_id=hub_id,
        crm_id=crm_id,
        email=link.email,
        name=link.name,
        sync_tags=link.sync_tags,
        status=link.status,
        content_hash=digest,
        deleted_side=None,
        last_synced_at=datetime.now(UTC),
    )

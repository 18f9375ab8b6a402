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
from syncd.sync.deletions import hub_object
from syncd.sync.mapping import ObjectMapping, stored_base
from syncd.sync.merge import is_empty
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
    ids = [lk.hub_id for lk in links if lk.hub_id]
    found = {
        r.id: mapping.to_crm(dict(r.fields))
        for r in await sides.hub.get_by_ids(hub_object(obj), ids, fields=sorted(mapping.hub_to_crm))
    }
    ext = settings.crm.external_id_fields.get(obj) if settings.crm else None
    todo: list[tuple[RecordLink, WriteItem, dict[str, Any]]] = []
    for link in links:
        values = _source_values(link, link.hub_id, found, mapping, out)
        if values is None:
            continue
        fields = {k: v for k, v in values.items() if not is_empty(v)}
        if ext:
            fields[ext] = link.hub_id
        todo.append((link, WriteItem(fields), values))
    if not todo:
        return
    op = WriteOp.UPSERT if ext else WriteOp.CREATE
    results = await sides.crm.write(obj, op, [t[1] for t in todo], match_field=ext)
    for (link, _, values), res in zip(todo, results, strict=True):
        if not res.ok or not res.id:
            out.failed.append((link.id or 0, f"{res.error_code}: {res.error_message}"))
            continue
        await store.upsert_link(_relinked(link, hub_id=link.hub_id, crm_id=res.id, base=values))
        out.restored += 1


async def _to_hub(
    sides: Sides,
    store: StateStore,
    mapping: ObjectMapping,
    links: Sequence[RecordLink],
    out: RestoreOutcome,
) -> None:
    obj = mapping.object
    ids = [lk.crm_id for lk in links if lk.crm_id]
    found = {
        r.id: {f: r.fields.get(f) for f in mapping.crm_fields if f in r.fields}
        for r in await sides.crm.get_by_ids(obj, ids, fields=mapping.crm_fields)
    }
    todo: list[tuple[RecordLink, WriteItem, dict[str, Any]]] = []
    for link in links:
        values = _source_values(link, link.crm_id, found, mapping, out)
        if values is None:
            continue
        fields = mapping.to_hub({k: v for k, v in values.items() if not is_empty(v)})
        if link.sync_tags and obj in _HUB_MATCH:
            fields["tags"] = sorted(link.sync_tags)
        todo.append((link, WriteItem(fields), values))
    if not todo:
        return
    results = await sides.hub.write(
        hub_object(obj), WriteOp.UPSERT, [t[1] for t in todo], match_field=_HUB_MATCH.get(obj)
    )
    for (link, _, values), res in zip(todo, results, strict=True):
        if not res.ok or not res.id:
            out.failed.append((link.id or 0, f"{res.error_code}: {res.error_message}"))
            continue
        await store.upsert_link(_relinked(link, hub_id=res.id, crm_id=link.crm_id, base=values))
        out.restored += 1


def _source_values(
    link: RecordLink,
    source_id: str | None,
    found: dict[str, dict[str, Any]],
    mapping: ObjectMapping,
    out: RestoreOutcome,
) -> dict[str, Any] | None:
    """What to re-create from: the surviving side's current values over the base (the base
    alone when that side is gone too, e.g. after a propagated delete); None when neither."""
    base = stored_base(link, mapping)
    current = found.get(source_id or "")
    if current is None and not base:
        out.failed.append((link.id or 0, "deleted on both sides and no base: nothing to restore"))
        return None
    return {**base, **(current or {})}


def _relinked(
    link: RecordLink, *, hub_id: str | None, crm_id: str | None, base: dict[str, Any]
) -> RecordLink:
    # Both sides hold the restored values: they are the base; the deletion mark goes.
    return RecordLink(
        object=link.object,
        hub_id=hub_id,
        crm_id=crm_id,
        email=link.email,
        name=link.name,
        sync_tags=link.sync_tags,
        status=link.status,
        deleted_side=None,
        last_synced_at=datetime.now(UTC),
        base=base,
    )

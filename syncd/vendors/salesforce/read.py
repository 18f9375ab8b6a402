"""Salesforce reads: SOQL pulls of changed records (leads also with their fresh
conversions), records by id, deletions (the endpoint reaches back 15 days) and describe.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd.errors import ConfigError
from syncd.model import DeletedRecord, FieldInfo, ObjectType, Page, Record, builder
from syncd.rules import Rule
from syncd.vendors.salesforce.answers import BATCH, SOBJECT, iso, parse_sf_datetime
from syncd.vendors.salesforce.base import SalesforceBase
from syncd.vendors.salesforce.soql import (
    SoqlBuildError,
    compile_rule,
    date_literal,
    datetime_literal,
    field_name,
    record_id,
    whole_second,
)

_record = builder(Record)  # one per record read: without per-field setattr
BASE_FIELDS = ("Id", "SystemModstamp", "CreatedDate")
LEAD_FIELDS = (
    "IsConverted",
    "ConvertedDate",
    "ConvertedContactId",
    "ConvertedAccountId",
    "ConvertedOpportunityId",
)
DELETED_WINDOW = timedelta(days=15)
_DELETED_OVERLAP = timedelta(minutes=5)


class SalesforceReads(SalesforceBase):
    """The read and describe methods of `CrmConnector`."""

    _describe: dict[ObjectType, list[FieldInfo]]

    def _to_record(self, obj: ObjectType, row: dict[str, Any]) -> Record:
        # The row is this page's own decoded dict: drop its attributes instead of copying it.
        fields = row
        fields.pop("attributes", None)
        stamp, created = fields.get("SystemModstamp"), fields.get("CreatedDate")
        modified_at = parse_sf_datetime(stamp) if isinstance(stamp, str) else None
        return _record(
            object=obj,
            id=str(fields.get("Id")),
            fields=fields,
            modified_at=modified_at,
            created_at=(
                modified_at  # a new record's stamps are equal: parse once
                if created == stamp
                else parse_sf_datetime(created)
                if isinstance(created, str)
                else None
            ),
            deleted=bool(fields.get("IsDeleted", False)),
        )

    def _select(self, obj: ObjectType, fields: Sequence[str]) -> str:
        extra = LEAD_FIELDS if obj is ObjectType.LEAD else ()
        names: list[str] = []
        seen: set[str] = set()
        try:
            for f in (*BASE_FIELDS, *extra, *fields):
                name = field_name(f)
                if name.lower() not in seen:
                    seen.add(name.lower())
                    names.append(name)
        except SoqlBuildError as exc:
            raise ConfigError(f"salesforce: {SOBJECT[obj]}: {exc}") from None
        return ", ".join(names)

    async def changed_since(
        self,
        obj: ObjectType,
        cursor: str | None,
        *,
        fields: Sequence[str] = (),
        criteria: Rule | None = None,
    ) -> AsyncIterator[Page]:
        """Pages ordered by SystemModstamp after `cursor`; leads also yield fresh conversions."""
        sobject = SOBJECT[obj]
        select = self._select(obj, fields)
        since = parse_sf_datetime(cursor) if cursor else None
        where: list[str] = []
        if since is not None:
            # `>=` the cursor's second, not `>` the cursor: SystemModstamp has whole-second
            # precision and SOQL ignores a literal's milliseconds, so a record saved later in
            # the cursor's own second carries the cursor's stamp (salesforce.stackexchange.com
            # /questions/234824). What was read at that second is read again; it costs no write.
            where.append(f"SystemModstamp >= {datetime_literal(whole_second(since))}")
        if criteria is not None:
            try:
                where.append(compile_rule(criteria, await self._field_types(obj)))
            except SoqlBuildError as exc:
                raise ConfigError(f"salesforce: {sobject} criteria: {exc}") from None
        soql = f"SELECT {select} FROM {sobject}"
        if where:
            soql += " WHERE " + " AND ".join(where)
        soql += " ORDER BY SystemModstamp ASC"
        newest = since
        seen: set[str] = set()
        async for rows in self._query(soql):
            records = tuple(self._to_record(obj, r) for r in rows)
            for rec in records:
                seen.add(rec.id)
                if rec.modified_at is not None and (newest is None or rec.modified_at > newest):
                    newest = rec.modified_at
            yield Page(records, iso(newest) if newest else cursor)
        if obj is ObjectType.LEAD and since is not None:
            conv = (
                f"SELECT {select} FROM Lead WHERE IsConverted = TRUE AND "
                f"ConvertedDate >= {date_literal(since.date())} ORDER BY SystemModstamp ASC"
            )
            async for rows in self._query(conv):
                records = tuple(
                    rec for rec in (self._to_record(obj, r) for r in rows) if rec.id not in seen
                )
                seen.update(rec.id for rec in records)
                if records:
                    yield Page(records, iso(newest) if newest else cursor)

    async def get_by_ids(
        self, obj: ObjectType, ids: Sequence[str], *, fields: Sequence[str] = ()
    ) -> list[Record]:
        """Current state of the given records, 200 ids per query; unknown ids are left out."""
        select = self._select(obj, fields)
        out: list[Record] = []
        unique = list(dict.fromkeys(ids))
        for i in range(0, len(unique), BATCH):
            try:
                quoted = ", ".join(record_id(x) for x in unique[i : i + BATCH])
            except SoqlBuildError as exc:
                raise ConfigError(f"salesforce: {exc}") from None
            soql = f"SELECT {select} FROM {SOBJECT[obj]} WHERE Id IN ({quoted})"
            async for rows in self._query(soql):
                out.extend(self._to_record(obj, r) for r in rows)
        return out

    async def deleted_since(
        self, obj: ObjectType, cursor: str | None
    ) -> tuple[list[DeletedRecord], str | None]:
        """Records deleted after `cursor`, by ``queryAll`` with ``IsDeleted = true`` (one
        query, second precision, no criteria). The next cursor stays a few minutes behind
        now, so a deletion committed while this query ran is seen next time (a deletion
        seen twice is recorded once).

        Salesforce keeps deleted records in its recycle bin for 15 days
        (developer.salesforce.com "queryAll" and "Get Deleted Records": earliestDateAvailable):
        older deletions are not listed, and `DELETED_WINDOW` tells callers how far back an
        answer reaches."""
        now = datetime.now(UTC)
        start = parse_sf_datetime(cursor) if cursor else now - DELETED_WINDOW
        # `>=` its second, as in `changed_since`: a deletion later in the cursor's second has
        # the cursor's stamp. A deletion read twice is recorded once.
        soql = (
            f"SELECT Id, SystemModstamp FROM {SOBJECT[obj]} WHERE IsDeleted = true"
            f" AND SystemModstamp >= {datetime_literal(whole_second(start))}"
            " ORDER BY SystemModstamp ASC"
        )
        out: list[DeletedRecord] = []
        newest = start
        async for rows in self._query(soql, with_deleted=True):
            for row in rows:
                at = parse_sf_datetime(row["SystemModstamp"])
                out.append(DeletedRecord(obj, str(row["Id"]), at))
                newest = max(newest, at)
        return out, iso(max(newest, now - _DELETED_OVERLAP))

    async def describe(self, obj: ObjectType) -> list[FieldInfo]:
        """Fields of the object; `required` = createable, not nillable, not defaulted."""
        if obj not in self._describe:
            body = await self._get(f"/sobjects/{SOBJECT[obj]}/describe", endpoint="describe")
            self._describe[obj] = [
                FieldInfo(
                    name=f["name"],
                    type=f["type"],
                    required=bool(
                        f.get("createable")
                        and not f.get("nillable")
                        and not f.get("defaultedOnCreate")
                    ),
                    label=f.get("label"),
                    max_length=f.get("length") or None,
                )
                for f in body.get("fields", [])
            ]
        return self._describe[obj]

    async def _field_types(self, obj: ObjectType) -> dict[str, str]:
        return {f.name: f.type for f in await self.describe(obj)}

"""The Salesforce connector: SOQL pulls, deleted records, sObject Collections writes, describe.

All calls go through the shared `HttpClient` (retries, Retry-After, re-auth on 401); this
module adds the vendor's error classification, API-quota tracking from ``Sforce-Limit-Info``
and per-record mapping of collection results.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from syncd.config import CrmSettings
from syncd.errors import (
    AuthError,
    ConfigError,
    QuotaExhausted,
    RateLimited,
    SyncdError,
    TransientError,
)
from syncd.model import (
    DeletedRecord,
    ErrorCategory,
    FieldInfo,
    ObjectType,
    Page,
    QuotaState,
    Record,
    WriteItem,
    WriteOp,
    WriteResult,
    builder,
)
from syncd.rules import Rule
from syncd.vendors.http import (
    HttpClient,
    HttpResponse,
    QuotaGuard,
    RateLimiter,
    RetryPolicy,
    parse_retry_after,
)
from syncd.vendors.salesforce.auth import SalesforceAuth
from syncd.vendors.salesforce.soql import (
    SoqlBuildError,
    compile_rule,
    date_literal,
    datetime_literal,
    field_name,
    record_id,
)

_record = builder(Record)  # one per record read: without per-field setattr
SOBJECT = {
    ObjectType.CONTACT: "Contact",
    ObjectType.LEAD: "Lead",
    ObjectType.ACCOUNT: "Account",
    ObjectType.OPPORTUNITY: "Opportunity",
}
BASE_FIELDS = ("Id", "SystemModstamp", "CreatedDate")
LEAD_FIELDS = (
    "IsConverted",
    "ConvertedDate",
    "ConvertedContactId",
    "ConvertedAccountId",
    "ConvertedOpportunityId",
)
BATCH = 200
DELETED_WINDOW = timedelta(days=15)
LOCK_RETRIES = 3
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")
CATEGORY = {
    "REQUIRED_FIELD_MISSING": ErrorCategory.VALIDATION,
    "INVALID_EMAIL_ADDRESS": ErrorCategory.VALIDATION,
    "FIELD_CUSTOM_VALIDATION_EXCEPTION": ErrorCategory.VALIDATION,
    "FIELD_INTEGRITY_EXCEPTION": ErrorCategory.VALIDATION,
    "INVALID_FIELD": ErrorCategory.VALIDATION,
    "INVALID_FIELD_FOR_INSERT_UPDATE": ErrorCategory.VALIDATION,
    "INVALID_TYPE_ON_FIELD_IN_RECORD": ErrorCategory.VALIDATION,
    "STRING_TOO_LONG": ErrorCategory.VALIDATION,
    "MISSING_ARGUMENT": ErrorCategory.VALIDATION,
    "MALFORMED_ID": ErrorCategory.VALIDATION,
    "INVALID_CROSS_REFERENCE_KEY": ErrorCategory.VALIDATION,
    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST": ErrorCategory.VALIDATION,
    "DUPLICATE_VALUE": ErrorCategory.DUPLICATE,
    "DUPLICATES_DETECTED": ErrorCategory.DUPLICATE,
    "DUPLICATE_EXTERNAL_ID": ErrorCategory.DUPLICATE,
    "CANNOT_UPDATE_CONVERTED_LEAD": ErrorCategory.CONVERTED_LEAD,
    "UNABLE_TO_LOCK_ROW": ErrorCategory.TRANSIENT,
    "ALL_OR_NONE_OPERATION_ROLLED_BACK": ErrorCategory.TRANSIENT,
}


@lru_cache(maxsize=4096)  # a pull page repeats stamps a lot; datetimes are immutable
def parse_sf_datetime(value: str) -> datetime:
    """A Salesforce or ISO datetime (``…000+0000``, ``…Z``, ``…+00:00``) as aware UTC."""
    s = value.strip().replace("Z", "+00:00")
    # "+0000" -> "+00:00" (what r"[+-]\d{4}$" finds, without a regex: this runs per record)
    if len(s) >= 5 and s[-5] in "+-" and s[-4:].isdecimal():
        s = s[:-2] + ":" + s[-2:]
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def iso(value: datetime) -> str:
    """The cursor form: ISO 8601 with milliseconds and offset."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


def _first_error(resp: HttpResponse) -> tuple[str, str]:
    try:
        body = resp.json()
    except ValueError:
        return "", ""
    item = body[0] if isinstance(body, list) and body else body
    if isinstance(item, dict):
        return str(item.get("errorCode", "")), str(item.get("message", ""))
    return "", ""


def classify(resp: HttpResponse) -> SyncdError | None:
    """Turn a non-2xx Salesforce response into the typed error the engine acts on."""
    code, message = _first_error(resp)
    where = urlsplit(resp.url).path
    text = f"salesforce: {where}: HTTP {resp.status}" + (
        f" {code}: {message[:300]}" if code else ""
    )
    if resp.status == 401:
        return AuthError(f"{text}; the session was rejected after re-authenticating")
    if resp.status == 403 and code == "REQUEST_LIMIT_EXCEEDED":
        used, limit = _limit_info(resp)
        return QuotaExhausted(text, used=used, limit=limit)
    if resp.status == 429:
        return RateLimited(text, parse_retry_after(resp.headers.get("Retry-After"), 5.0))
    if resp.status >= 500:
        return TransientError(text)
    if resp.status == 403:
        return AuthError(f"{text}; check the integration user's permissions")
    # MALFORMED_QUERY, INVALID_FIELD, INVALID_TYPE and the like: the mapping or config is
    # wrong for this org, which retrying cannot fix.
    return ConfigError(text)


def _limit_info(resp: HttpResponse) -> tuple[int | None, int | None]:
    header = next((v for k, v in resp.headers.items() if k.lower() == "sforce-limit-info"), "")
    m = _LIMIT_INFO.search(header)
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)


class SalesforceConnector:
    """`CrmConnector` for the Salesforce REST API."""

    name = "salesforce"

    def __init__(
        self,
        settings: CrmSettings,
        *,
        rate_limiter: RateLimiter | None = None,
        lock_retries: int = LOCK_RETRIES,
    ) -> None:
        self.settings = settings
        self.auth = SalesforceAuth(settings)
        self.guard = QuotaGuard(self.name, reserve=settings.quota_reserve)
        h = settings.http
        self.http = HttpClient(
            self.name,
            auth=self.auth,
            classify=classify,
            rate_limiter=rate_limiter,
            retry=RetryPolicy(h.retry_attempts, h.retry_base_delay, h.retry_max_delay),
            connect_timeout=h.connect_timeout,
            read_timeout=h.read_timeout,
            on_response=self._on_response,
        )
        self.lock_retries = lock_retries
        self._describe: dict[ObjectType, list[FieldInfo]] = {}

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the session and authenticate (raises AuthError when rejected)."""
        await self.auth.headers(self.http.session)

    async def close(self) -> None:
        """Close the HTTP session; safe to call twice."""
        await self.http.close()

    async def check_auth(self) -> None:
        """One cheap authenticated call (the org's limits)."""
        await self._get("/limits", endpoint="limits")

    def quota(self) -> QuotaState | None:
        """Daily API usage as last reported in ``Sforce-Limit-Info``."""
        return self.guard.state

    def _on_response(self, resp: HttpResponse) -> None:
        used, limit = _limit_info(resp)
        if used is not None and limit is not None:
            self.guard.update(used, limit)

    # -- plumbing -----------------------------------------------------------------------

    async def _url(self, path: str) -> str:
        await self.auth.headers(self.http.session)
        assert self.auth.instance_url is not None
        if path.startswith("/services/"):
            return self.auth.instance_url + path
        return f"{self.auth.instance_url}/services/data/v{self.settings.api_version}{path}"

    async def _get(self, path: str, *, endpoint: str, params: dict[str, str] | None = None) -> Any:
        resp = await self.http.request(
            "GET", await self._url(path), endpoint=endpoint, params=params
        )
        return resp.json()

    async def _query(self, soql: str) -> AsyncIterator[list[dict[str, Any]]]:
        body = await self._get("/query", endpoint="query", params={"q": soql})
        while True:
            yield list(body.get("records", []))
            nxt = body.get("nextRecordsUrl")
            if body.get("done", True) or not nxt:
                return
            body = await self._get(str(nxt), endpoint="query_more")

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

    # -- reads --------------------------------------------------------------------------

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
            where.append(f"SystemModstamp > {datetime_literal(since)}")
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
        """Deletions after `cursor` (clamped to 15 days); the next cursor is latestDateCovered."""
        now = datetime.now(UTC)
        floor = now - DELETED_WINDOW + timedelta(minutes=5)
        start = parse_sf_datetime(cursor) if cursor else floor
        start = max(start, floor)
        if now - start <= timedelta(minutes=1):
            return [], cursor  # the endpoint needs more than a minute between start and end
        body = await self._get(
            f"/sobjects/{SOBJECT[obj]}/deleted/",
            endpoint="deleted",
            params={"start": datetime_literal(start), "end": datetime_literal(now)},
        )
        out = [
            DeletedRecord(
                obj,
                str(row["id"]),
                parse_sf_datetime(row["deletedDate"]) if row.get("deletedDate") else None,
            )
            for row in body.get("deletedRecords", [])
        ]
        covered = body.get("latestDateCovered")
        return out, iso(parse_sf_datetime(covered)) if covered else cursor

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

    # -- writes -------------------------------------------------------------------------

    async def write(
        self,
        obj: ObjectType,
        op: WriteOp,
        items: Sequence[WriteItem],
        *,
        match_field: str | None = None,
    ) -> list[WriteResult]:
        """Write via sObject Collections, 200 a call; one result per item, in input order."""
        sobject = SOBJECT[obj]
        ext: str | None = None
        if op is WriteOp.UPSERT:
            ext = match_field or self.settings.external_id_fields.get(obj)
            if not ext:
                raise ConfigError(f"salesforce: no external id field configured for {obj.value}")
            try:
                ext = field_name(ext)
            except SoqlBuildError as exc:
                raise ConfigError(f"salesforce: {exc}") from None
        results: list[WriteResult | None] = [None] * len(items)
        pending: list[int] = []
        for i, item in enumerate(items):
            local = _local_check(op, item, ext)
            if local is not None:
                results[i] = local
            else:
                pending.append(i)
        for attempt in range(self.lock_retries + 1):
            retry: list[int] = []
            for start in range(0, len(pending), BATCH):
                chunk = pending[start : start + BATCH]
                answers = await self._send(sobject, op, ext, [items[i] for i in chunk])
                for i, answer in zip(chunk, answers, strict=True):
                    results[i] = answer
                    if answer.error_category is ErrorCategory.TRANSIENT:
                        retry.append(i)
            if not retry or attempt == self.lock_retries:
                break
            pending = retry
            h = self.settings.http
            await asyncio.sleep(
                random.uniform(0, min(h.retry_max_delay, h.retry_base_delay * 2**attempt))
            )
        return [r for r in results if r is not None]

    async def _send(
        self, sobject: str, op: WriteOp, ext: str | None, items: Sequence[WriteItem]
    ) -> list[WriteResult]:
        self.guard.check_write()
        records: list[dict[str, Any]] = []
        for item in items:
            rec: dict[str, Any] = {"attributes": {"type": sobject}}
            rec.update({k: _jsonable(v) for k, v in item.fields.items() if k.lower() != "id"})
            if op is WriteOp.UPDATE:
                rec["id"] = item.id
            records.append(rec)
        body = {"allOrNone": False, "records": records}
        if op is WriteOp.CREATE:
            method, path = "POST", "/composite/sobjects"
        elif op is WriteOp.UPDATE:
            method, path = "PATCH", "/composite/sobjects"
        else:
            method, path = "PATCH", f"/composite/sobjects/{sobject}/{ext}"
        resp = await self.http.request(
            method, await self._url(path), endpoint=f"collections_{op.value}", json_body=body
        )
        answers = resp.json()
        if not isinstance(answers, list) or len(answers) != len(items):
            raise TransientError("salesforce: collections answer does not match the request")
        return [_result(op, a) for a in answers]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return datetime_literal(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _local_check(op: WriteOp, item: WriteItem, ext: str | None) -> WriteResult | None:
    if op is WriteOp.UPDATE and not item.id:
        return WriteResult(
            False,
            error_category=ErrorCategory.VALIDATION,
            error_code="MISSING_ID",
            error_message="update needs the record's Salesforce id",
        )
    if op is WriteOp.UPSERT and ext is not None and item.fields.get(ext) in (None, ""):
        return WriteResult(
            False,
            error_category=ErrorCategory.VALIDATION,
            error_code="MISSING_ARGUMENT",
            error_message=f"{ext} has no value to match on",
        )
    return None


def _result(op: WriteOp, answer: Any) -> WriteResult:
    if not isinstance(answer, dict):
        return WriteResult(False, error_category=ErrorCategory.REJECTED, error_code="UNKNOWN")
    rid = answer.get("id")
    if answer.get("success"):
        created = bool(answer.get("created", op is WriteOp.CREATE))
        return WriteResult(True, id=str(rid) if rid else None, created=created)
    errors = answer.get("errors") or [{}]
    first = errors[0] if isinstance(errors[0], dict) else {}
    code = str(first.get("statusCode", "UNKNOWN"))
    message = "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict))
    return WriteResult(
        False,
        id=str(rid) if rid else None,
        error_category=CATEGORY.get(code, ErrorCategory.REJECTED),
        error_code=code,
        error_message=message or None,
    )

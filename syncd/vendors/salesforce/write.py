"""Salesforce writes through sObject Collections: 200 records a call, each with its own
result (``allOrNone`` is off), in input order.

Records that fail transiently (a row lock, a rolled-back operation) are sent again up to
`lock_retries` times after a random, growing pause; every other error code maps to a
category through `CATEGORY`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from syncd.errors import ConfigError, TransientError
from syncd.model import ErrorCategory, ObjectType, WriteItem, WriteOp, WriteResult
from syncd.vendors.http import QuotaGuard
from syncd.vendors.salesforce.answers import BATCH, SOBJECT
from syncd.vendors.salesforce.base import SalesforceBase
from syncd.vendors.salesforce.soql import SoqlBuildError, datetime_literal, field_name

LOCK_RETRIES = 3
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


class SalesforceWrites(SalesforceBase):
    """The write method of `CrmConnector`."""

    guard: QuotaGuard
    lock_retries: int

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

    async def delete(self, obj: ObjectType, ids: Sequence[str]) -> list[WriteResult]:
        """Delete by id through sObject Collections, 200 a call (``DELETE
        /composite/sobjects?ids=…&allOrNone=false``, developer.salesforce.com "sObject
        Collections: Delete Records"); a record already deleted is not an error here."""
        out: list[WriteResult] = []
        for start in range(0, len(ids), BATCH):
            chunk = list(ids[start : start + BATCH])
            self.guard.check_write()
            resp = await self.http.request(
                "DELETE",
                await self._url("/composite/sobjects"),
                endpoint="collections_delete",
                params={"ids": ",".join(chunk), "allOrNone": "false"},
            )
            answers = resp.json()
            if not isinstance(answers, list) or len(answers) != len(chunk):
                raise TransientError("salesforce: collections answer does not match the request")
            for rid, answer in zip(chunk, answers, strict=True):
                res = _result(WriteOp.UPDATE, answer)
                gone = res.error_code in ("ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY")
                out.append(WriteResult(True, id=rid) if gone else res)
        return out

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

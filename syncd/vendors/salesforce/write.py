"""Salesforce writes through sObject Collections: 200 records a call, each with its own
result (``allOrNone`` is off), in input order.

Records that fail transiently (a row lock, a rolled-back operation) are sent again up to
`lock_retries` times after a random, growing pause; every other error code maps to a
category through `CATEGORY`.

Duplicate rules: with ``crm.duplicate_rules_allow_save`` every write carries
``Sforce-Duplicate-Rule-Header: allowSave=true`` (developer.salesforce.com REST API
"Duplicate Rule Header"), which saves past rules whose action is Allow with an alert. Without
it, or past a rule that blocks, a record fails with DUPLICATES_DETECTED; a collection answer
does not say which record matched, so syncd looks for records with the same email and names
them in the error.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from syncd.errors import ConfigError, IntegrationError, TransientError
from syncd.logging import get_logger
from syncd.model import ErrorCategory, ObjectType, WriteItem, WriteOp, WriteResult
from syncd.vendors.http import QuotaGuard
from syncd.vendors.salesforce.answers import BATCH, SOBJECT
from syncd.vendors.salesforce.base import SalesforceBase
from syncd.vendors.salesforce.soql import SoqlBuildError, datetime_literal, field_name, quote

log = get_logger("syncd.salesforce")
LOCK_RETRIES = 3
DUPLICATE_RULE_HEADER = "Sforce-Duplicate-Rule-Header"
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
        out = [r for r in results if r is not None]
        await self._name_duplicates(sobject, items, out)
        return out

    async def _name_duplicates(
        self, sobject: str, items: Sequence[WriteItem], results: list[WriteResult]
    ) -> None:
        """Say in each DUPLICATES_DETECTED error which records matched: those of the object
        with the record's email (one query per 200 emails). Best effort: when the lookup
        fails, the error keeps Salesforce's words."""
        duplicates = [i for i, r in enumerate(results) if r.error_code == "DUPLICATES_DETECTED"]
        if not duplicates:
            return
        emails: dict[int, str] = {}
        for i in duplicates:
            mail = items[i].fields.get("Email")
            if isinstance(mail, str) and mail.strip():
                emails[i] = mail.strip().lower()
        found: dict[str, list[str]] = {}
        values = sorted(set(emails.values()))
        try:
            for at in range(0, len(values), BATCH):
                listed = ", ".join(quote(v) for v in values[at : at + BATCH])
                soql = f"SELECT Id, Email FROM {sobject} WHERE Email IN ({listed})"
                async for rows in self._query(soql):
                    for row in rows:
                        key = str(row.get("Email") or "").lower()
                        found.setdefault(key, []).append(str(row.get("Id")))
        except IntegrationError as exc:
            log.warning("duplicate_lookup_failed", object=sobject, error=str(exc))
            return
        for i in duplicates:
            res, own = results[i], items[i].id
            matched = [x for x in found.get(emails.get(i, ""), []) if x != own]
            results[i] = res._replace(
                error_message=_duplicate_message(
                    sobject,
                    res.error_message,
                    emails.get(i),
                    matched,
                    allow_save=self.settings.duplicate_rules_allow_save,
                )
            )

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
        headers = (
            {DUPLICATE_RULE_HEADER: "allowSave=true"}
            if self.settings.duplicate_rules_allow_save
            else None
        )
        resp = await self.http.request(
            method,
            await self._url(path),
            endpoint=f"collections_{op.value}",
            json_body=body,
            headers=headers,
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


def _duplicate_message(
    sobject: str,
    said: str | None,
    email: str | None,
    matched: list[str],
    *,
    allow_save: bool,
) -> str:
    """A DUPLICATES_DETECTED error that names the matched records and the way out."""
    head = f"{said or 'duplicate detected'}: a Salesforce duplicate rule matched "
    if matched:
        head += f"existing {sobject} {', '.join(matched)} (same email {email})"
    elif email:
        head += (
            f"an existing record; no {sobject} has the email {email} "
            "(the rule matches on other fields)"
        )
    else:
        head += "an existing record"
    if allow_save:
        return (
            f"{head}; the rule blocks duplicates (allowSave cannot save past it): "
            "merge the records in Salesforce or change the rule"
        )
    return (
        f"{head}; merge the records in Salesforce, or set "
        "crm.duplicate_rules_allow_save = true to save past rules that only alert"
    )

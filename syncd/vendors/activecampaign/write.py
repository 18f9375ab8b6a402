"""Writes to ActiveCampaign one call per record: contacts through contact/sync (or
create/update by id), accounts and deals through their own endpoints. Every function
returns one WriteResult per input, in order.

This is also the ground the bulk import (bulk.py) stands on: what the writers need from
the connector and how a field key becomes an AC attribute or custom field.

Call cost: a contact batch of n costs n calls (plus tag/list calls when items carry
``tags``/``lists``); an account or deal one call, plus a search for an account upserted
without its id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from syncd.model import ErrorCategory, WriteItem, WriteOp, WriteResult
from syncd.vendors.activecampaign.answers import (
    EMAIL_RE,
    Rejected,
    failed,
    record_error,
)
from syncd.vendors.activecampaign.imports import ImportWatcher
from syncd.vendors.http import HttpResponse, RateLimiter

STANDARD = {"email": "email", "firstName": "first_name", "lastName": "last_name", "phone": "phone"}
ALIASES = {"first_name": "firstName", "last_name": "lastName"}
META_KEYS = {"tags", "lists", "id"}


class AcApi(Protocol):
    """What the writers need from the connector."""

    bulk_threshold: int
    import_poll_interval: float
    import_timeout: float
    confirm_imports: bool
    bulk_limiter: RateLimiter | None
    imports: ImportWatcher

    async def call(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        json_body: Any = None,
        params: Any = None,
    ) -> Any:
        """One API call; returns the decoded body."""

    async def raw(
        self, method: str, path: str, *, endpoint: str, json_body: Any = None
    ) -> HttpResponse:
        """One API call; returns the whole response."""

    async def field_ids(self) -> dict[str, str]:
        """Custom field id by lower-cased title, perstag or id."""

    async def add_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        """Tag a contact."""

    async def subscribe(self, list_id: str, contact_ids: Sequence[str]) -> Any:
        """Subscribe contacts to a list."""


@dataclass
class _Row:
    index: int
    email: str
    std: dict[str, str]
    custom: dict[str, str]  # field id -> value
    tags: list[str] = field(default_factory=list)
    lists: list[str] = field(default_factory=list)
    id: str | None = None


def as_list(value: Any) -> list[str]:
    """Tags or list ids as items carry them: a comma-separated string or a sequence."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


async def _prepare(
    api: AcApi, items: Sequence[WriteItem], results: list[WriteResult | None], need_email: bool
) -> list[_Row]:
    # The same few field names repeat on every item: each is resolved once per call to
    # (standard attribute?, name or custom field id), None for tags/lists/id, or "" when AC
    # has no such field.
    kinds = {key: await field_kind(api, key) for key in field_keys(items)}
    rows: list[_Row] = []
    for i, item in enumerate(items):
        std: dict[str, str] = {}
        custom: dict[str, str] = {}
        problem: WriteResult | None = None
        for key, value in item.fields.items():
            kind = kinds[key]
            if kind is None:
                continue
            is_std, name = kind
            if not name:
                problem = unknown_field(key)
                break
            if type(value) is not str:  # str() only when needed: this runs per value
                value = "" if value is None else str(value)
            if is_std:
                std[name] = value.strip()
            else:
                custom[name] = value
        email = std.get("email", "")
        if problem is None and (need_email or email) and not EMAIL_RE.match(email):
            problem = invalid_email(email)
        if problem is not None:
            results[i] = problem
            continue
        rows.append(
            _Row(
                i,
                email,
                std,
                custom,
                as_list(item.fields.get("tags")),
                as_list(item.fields.get("lists")),
                item.id,
            )
        )
    return rows


def field_keys(items: Sequence[WriteItem]) -> set[str]:
    """Every field key of a batch (a few names, repeated on every item)."""
    return set().union(*(item.fields for item in items))


async def field_kind(api: AcApi, key: str) -> tuple[bool, str] | None:
    """How _prepare writes a field key: (True, standard name), (False, custom field id),
    (False, "") when AC has no such field, None for the keys it handles apart."""
    key = ALIASES.get(key, key)
    if key in META_KEYS:
        return None
    if key in STANDARD:
        return True, key
    fid = (await api.field_ids()).get(key.lower())
    return False, fid or ""


async def write_contacts(api: AcApi, op: WriteOp, items: Sequence[WriteItem]) -> list[WriteResult]:
    """Write contacts matched by email, one call each (large upserts go to `import_contacts`)."""
    results: list[WriteResult | None] = [None] * len(items)
    by_id = op is WriteOp.UPDATE and all(i.id for i in items)
    rows = await _prepare(api, items, results, need_email=not by_id)
    for row in rows:
        results[row.index] = await _one(api, op, row)
    return filled(results)


def filled(results: list[WriteResult | None]) -> list[WriteResult]:
    """The results, a failure standing in for any item that got none."""
    return [r or failed(ErrorCategory.TRANSIENT, "NO_RESULT", "no result") for r in results]


def unknown_field(key: str) -> WriteResult:
    return failed(
        ErrorCategory.MAPPING,
        "UNKNOWN_FIELD",
        f"activecampaign has no contact field named {ALIASES.get(key, key)!r}",
    )


def invalid_email(email: str) -> WriteResult:
    return failed(ErrorCategory.VALIDATION, "INVALID_EMAIL", f"invalid email address: {email!r}")


async def _one(api: AcApi, op: WriteOp, row: _Row) -> WriteResult:
    contact: dict[str, Any] = dict(row.std)
    if row.custom:
        contact["fieldValues"] = [{"field": f, "value": v} for f, v in row.custom.items()]
    try:
        if op is WriteOp.CREATE:
            body = await api.call(
                "POST", "/contacts", endpoint="contacts.create", json_body={"contact": contact}
            )
            created = True
        elif op is WriteOp.UPDATE and row.id:
            body = await api.call(
                "PUT",
                f"/contacts/{row.id}",
                endpoint="contacts.update",
                json_body={"contact": contact},
            )
            created = False
        else:
            resp = await api.raw(
                "POST", "/contact/sync", endpoint="contact.sync", json_body={"contact": contact}
            )
            body = resp.json()
            # contact/sync answers 201 when it created the contact, 200 when it updated one.
            created = resp.status == 201
        cid = str(body["contact"]["id"])
        if row.tags:
            await api.add_tags(cid, row.tags)
        for lid in row.lists:
            await api.subscribe(lid, [cid])
    except Rejected as exc:
        return record_error(exc.resp)
    return WriteResult(ok=True, id=cid, created=created)


async def write_plain(
    api: AcApi,
    kind: str,
    op: WriteOp,
    items: Sequence[WriteItem],
    match_field: str | None,
) -> list[WriteResult]:
    """Accounts (``kind="account"``) or deals (``kind="deal"``), one call (or two) per item."""
    out: list[WriteResult] = []
    plural = f"{kind}s"
    for item in items:
        payload = {k: v for k, v in item.fields.items() if k not in META_KEYS}
        try:
            target = item.id
            if target is None and op is WriteOp.UPSERT and kind == "account":
                key = "name" if match_field in (None, "email") else str(match_field)
                target = await _find_account(api, str(payload.get(key, "")))
            if target is None and op is WriteOp.UPDATE:
                out.append(failed(ErrorCategory.VALIDATION, "MISSING_ID", "update needs an id"))
                continue
            if target is None:
                body = await api.call(
                    "POST", f"/{plural}", endpoint=f"{plural}.create", json_body={kind: payload}
                )
                out.append(WriteResult(ok=True, id=str(body[kind]["id"]), created=True))
            else:
                body = await api.call(
                    "PUT",
                    f"/{plural}/{target}",
                    endpoint=f"{plural}.update",
                    json_body={kind: payload},
                )
                out.append(WriteResult(ok=True, id=str(body[kind]["id"])))
        except Rejected as exc:
            out.append(record_error(exc.resp))
    return out


async def _find_account(api: AcApi, name: str) -> str | None:
    if not name:
        return None
    body = await api.call(
        "GET", "/accounts", endpoint="accounts.search", params={"search": name, "limit": "100"}
    )
    for row in body.get("accounts") or []:
        if str(row.get("name", "")).strip().lower() == name.strip().lower():
            return str(row["id"])
    return None

"""sObject Collections writes for the Salesforce simulator: validation and per-record results."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from syncd.sandbox.salesforce.soql import parse_datetime, whole_second
from syncd.sandbox.salesforce.state import EMAIL_RE, FieldSpec, SalesforceSandbox

MAX_RECORDS = 200
ROLLED_BACK = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was "
    "using AllOrNone header",
    "fields": [],
}


@dataclass(frozen=True)
class SaveOptions:
    """What a write request asked of the duplicate rules (``Sforce-Duplicate-Rule-Header``)."""

    allow_save: bool = False
    include_record_details: bool = False


def save_options(header: str, version: str) -> SaveOptions:
    """The ``Sforce-Duplicate-Rule-Header`` of a request, e.g. ``allowSave=true;
    includeRecordDetails=true; runAsCurrentUser=true``; every field defaults to false and the
    header exists from API version 52.0 (developer.salesforce.com REST API "Duplicate Rule
    Header", headers_duplicaterules.htm). An older version ignores it."""
    if not header or float(version) < 52.0:
        return SaveOptions()
    flags: dict[str, bool] = {}
    for part in header.replace(",", ";").split(";"):
        key, _, value = part.strip().partition("=")
        flags[key.strip().lower()] = value.strip().lower() == "true"
    return SaveOptions(
        allow_save=flags.get("allowsave", False),
        include_record_details=flags.get("includerecorddetails", False),
    )


class ApiError(Exception):
    """A request-level error: status and a Salesforce error array entry."""

    def __init__(
        self, status: int, code: str, message: str, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra or {}  # more keys of the entry: fields, duplicateResult


@dataclass
class _Staged:
    obj: str
    rec: dict[str, Any]
    created: bool
    written: dict[str, Any]
    key: str | None


@dataclass
class _Batch:
    sb: SalesforceSandbox
    options: SaveOptions = SaveOptions()
    version: str = "61.0"
    staged: dict[str, _Staged] = field(default_factory=dict)
    ext: dict[tuple[str, str], str] = field(default_factory=dict)
    # Live records by lower-cased email, per object, as they were before this request: the
    # duplicate rules compare a save with what is stored, not with the rest of its request.
    _emails: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def by_email(self, obj: str) -> dict[str, list[str]]:
        if obj not in self._emails:
            index: dict[str, list[str]] = {}
            for r in self.sb.records[obj].values():
                mail = r.get("Email")
                if isinstance(mail, str) and mail and not r["IsDeleted"]:
                    if obj == "Lead" and r.get("IsConverted"):
                        continue  # a converted lead is read-only history, not a duplicate
                    index.setdefault(mail.lower(), []).append(r["Id"])
            self._emails[obj] = index
        return self._emails[obj]

    def get(self, obj: str, rid: str) -> dict[str, Any] | None:
        if rid in self.staged:
            return self.staged[rid].rec
        return self.sb.records[obj].get(rid)

    def ext_owner(self, obj: str, value: str) -> str | None:
        key = (obj, value.lower())
        if key in self.ext:
            return self.ext[key]
        return self.sb.ext_index[obj].get(value.lower())


def _err(code: str, message: str, fields: list[str] | None = None) -> dict[str, Any]:
    return {"statusCode": code, "message": message, "fields": fields or []}


def _coerce(obj: str, name: str, spec: FieldSpec, value: Any) -> Any:
    if value is None:
        return None
    try:
        if spec.type == "datetime" and isinstance(value, str):
            return whole_second(parse_datetime(value))
        if spec.type == "date" and isinstance(value, str):
            return date.fromisoformat(value[:10])
        if spec.type in ("currency", "double") and not isinstance(value, bool):
            return float(value)
        if spec.type == "boolean" and not isinstance(value, bool):
            raise ValueError(value)
    except (TypeError, ValueError):
        raise ApiError(
            400,
            "JSON_PARSER_ERROR",
            f"Cannot deserialize instance of {spec.type} from VALUE_STRING value {value} "
            f"or request may be missing a required field at [line:1, column:1]",
        ) from None
    return value


def _prepare(
    sb: SalesforceSandbox, records: Any, path_type: str | None
) -> list[tuple[str, dict[str, Any], str | None]]:
    """Request-level checks; returns (object, canonical fields, id) per record."""
    if not isinstance(records, list):
        raise ApiError(400, "JSON_PARSER_ERROR", "records: expected an array")
    if len(records) > MAX_RECORDS:
        raise ApiError(
            400,
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 200 records into this call",
        )
    out: list[tuple[str, dict[str, Any], str | None]] = []
    for raw in records:
        if not isinstance(raw, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "records: expected objects")
        attrs = raw.get("attributes")
        raw_type = attrs.get("type") if isinstance(attrs, dict) else None
        raw_type = raw_type or path_type
        if not isinstance(raw_type, str):
            raise ApiError(400, "INVALID_TYPE", "Must send a concrete entity type.")
        obj = sb.object_name(raw_type)
        if obj is None or (path_type is not None and obj != sb.object_name(path_type)):
            raise ApiError(400, "INVALID_TYPE", f"sObject type '{raw_type}' is not supported.")
        rid: str | None = None
        fields: dict[str, Any] = {}
        for key, value in raw.items():
            if key == "attributes":
                continue
            if key.lower() == "id":
                rid = None if value is None else str(value)
                continue
            name = sb.canonical_field(obj, key)
            if name is None:
                raise ApiError(
                    400, "INVALID_FIELD", f"No such column '{key}' on sobject of type {obj}"
                )
            fields[name] = _coerce(obj, name, sb.schema[obj][name], value)
        out.append((obj, fields, rid))
    return out


def apply_collection(
    sb: SalesforceSandbox,
    op: str,
    records: Any,
    *,
    all_or_none: bool,
    path_type: str | None = None,
    ext_field: str | None = None,
    endpoint: str,
    options: SaveOptions = SaveOptions(),
    version: str = "61.0",
    terse: bool = True,
) -> list[dict[str, Any]]:
    """Apply a create/update/upsert collection request; one result per record, in order.

    With `terse` (sObject Collections), a DUPLICATES_DETECTED error is only its statusCode,
    message and fields; the single-record resources call with `terse` off and answer the
    matched records too (``duplicateResult``)."""
    prepared = _prepare(sb, records, path_type)
    batch = _Batch(sb, options, version)
    if op == "upsert":
        assert ext_field is not None
        ext_counts = Counter(
            str(f.get(ext_field)).lower() for _, f, _ in prepared if f.get(ext_field)
        )
    results: list[dict[str, Any]] = []
    for obj, fields, rid in prepared:
        created = False
        existing: dict[str, Any] | None = None
        if op == "create":
            if rid is not None:
                results.append(
                    _fail(
                        None,
                        _err(
                            "INVALID_FIELD_FOR_INSERT_UPDATE",
                            "cannot specify Id in an insert call",
                            ["Id"],
                        ),
                    )
                )
                continue
            created = True
        elif op == "update":
            if rid is None:
                results.append(
                    _fail(None, _err("MISSING_ARGUMENT", "Id not specified in an update call"))
                )
                continue
            existing = batch.get(obj, rid)
            if existing is None or existing["IsDeleted"]:
                code = "ENTITY_IS_DELETED" if existing else "INVALID_CROSS_REFERENCE_KEY"
                msg = "entity is deleted" if existing else "invalid cross reference id"
                results.append(_fail(rid, _err(code, msg)))
                continue
        else:
            assert ext_field is not None
            ext = fields.get(ext_field)
            if not ext:
                results.append(
                    _fail(None, _err("MISSING_ARGUMENT", f"{ext_field} not specified", [ext_field]))
                )
                continue
            if ext_counts[str(ext).lower()] > 1:
                results.append(
                    _fail(
                        None,
                        _err(
                            "DUPLICATE_EXTERNAL_ID",
                            f"Duplicate external id specified: {ext}",
                            [ext_field],
                        ),
                    )
                )
                continue
            owner = batch.ext_owner(obj, str(ext))
            existing = batch.get(obj, owner) if owner else None
            created = existing is None
        results.append(_one(batch, obj, fields, existing, created, op))
    if terse:
        for r in results:
            for err in r["errors"]:
                err.pop("duplicateResult", None)
    failed = any(not r["success"] for r in results)
    if all_or_none and failed:
        return [
            r if not r["success"] else {"id": None, "success": False, "errors": [ROLLED_BACK]}
            for r in results
        ]
    for st in batch.staged.values():
        sb.records[st.obj][st.rec["Id"]] = st.rec
        if sb.external_id_field in sb.schema[st.obj]:
            idx = sb.ext_index[st.obj]
            for k in [k for k, v in idx.items() if v == st.rec["Id"]]:
                del idx[k]
            ext_val = st.rec.get(sb.external_id_field)
            if isinstance(ext_val, str) and ext_val:
                idx[ext_val.lower()] = st.rec["Id"]
        sb.record_write(endpoint, st.obj, st.rec["Id"], st.written, key=st.key, created=st.created)
    if op != "upsert":
        for r in results:
            r.pop("created", None)
    return results


def _fail(rid: str | None, error: dict[str, Any]) -> dict[str, Any]:
    return {"id": rid, "success": False, "errors": [error]}


def _one(
    batch: _Batch,
    obj: str,
    fields: dict[str, Any],
    existing: dict[str, Any] | None,
    created: bool,
    op: str,
) -> dict[str, Any]:
    sb = batch.sb
    rid = existing["Id"] if existing else None
    schema = sb.schema[obj]
    if existing is not None and obj == "Lead" and existing.get("IsConverted"):
        return _fail(rid, _err("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead"))
    if existing is not None and existing["Id"] in sb.locked_ids:
        return _fail(
            rid,
            _err(
                "UNABLE_TO_LOCK_ROW",
                f"unable to obtain exclusive access to this record or 1 records: {existing['Id']}",
            ),
        )
    email = fields.get("Email", existing.get("Email") if existing else None)
    if isinstance(email, str) and sb.locked_emails.get(email.lower(), 0) > 0:
        sb.locked_emails[email.lower()] -= 1
        return _fail(
            rid,
            _err(
                "UNABLE_TO_LOCK_ROW",
                f"unable to obtain exclusive access to this record or 1 records: {rid or email}",
            ),
        )
    bad = [
        n for n in fields
        if not (schema[n].createable if created else schema[n].updateable)
    ]  # fmt: skip
    if bad:
        return _fail(
            rid,
            _err(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(bad)}. Please check the security "
                "settings of this field and verify that it is read/write for your profile or "
                "permission set.",
                bad,
            ),
        )
    if created:
        rec: dict[str, Any] = {
            n: (False if s.type == "boolean" else None) for n, s in schema.items()
        }
        if obj == "Lead":
            rec["Status"] = "Open - Not Contacted"
    else:
        assert existing is not None
        rec = dict(existing)
    rec.update(fields)
    missing = [
        n for n, s in schema.items()
        if not s.nillable and not s.defaulted and s.createable and rec.get(n) in (None, "")
    ]  # fmt: skip
    if missing:
        return _fail(
            rid,
            _err(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            ),
        )
    for n, value in fields.items():
        spec = schema[n]
        if (
            spec.type == "email"
            and value not in (None, "")
            and not (isinstance(value, str) and EMAIL_RE.match(value))
        ):
            return _fail(
                rid, _err("INVALID_EMAIL_ADDRESS", f"{n}: invalid email address: {value}", [n])
            )
        if spec.length and isinstance(value, str) and len(value) > spec.length:
            return _fail(
                rid,
                _err(
                    "STRING_TOO_LONG",
                    f"{n}: data value too large: {value[:20]} (max length={spec.length})",
                    [n],
                ),
            )
    mail = rec.get("Email")
    if isinstance(mail, str) and mail.lower() in sb.faults.fail_emails:
        return _fail(
            rid,
            _err(
                "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                "This email address is blocked by the Syncd_Blocked_Email validation rule",
            ),
        )
    ext_field = sb.external_id_field
    ext = rec.get(ext_field) if ext_field in schema else None
    if isinstance(ext, str) and ext:
        owner = batch.ext_owner(obj, ext)
        if owner is not None and owner != rid:
            return _fail(
                rid,
                _err(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {ext_field} duplicates value on record with id: "
                    f"{owner}",
                ),
            )
    duplicate = _duplicate_rule(batch, obj, rec, existing, fields)
    if duplicate is not None:
        return _fail(rid, duplicate)
    if created:
        rec["Id"] = sb.new_id(obj)
        rec["CreatedDate"] = None
    sb.touch(rec)
    if created:
        rec["CreatedDate"] = rec["SystemModstamp"]
    if isinstance(ext, str) and ext:
        batch.ext[(obj, ext.lower())] = rec["Id"]
    written = {
        k: (v.isoformat() if isinstance(v, date | datetime) else v) for k, v in fields.items()
    }
    batch.staged[rec["Id"]] = _Staged(
        obj, rec, created, written, ext if isinstance(ext, str) else None
    )
    result: dict[str, Any] = {"id": rec["Id"], "success": True, "errors": []}
    if op == "upsert":
        result["created"] = created
    return result


def _duplicate_rule(
    batch: _Batch,
    obj: str,
    rec: dict[str, Any],
    existing: dict[str, Any] | None,
    fields: dict[str, Any],
) -> dict[str, Any] | None:
    """The org's duplicate rule for Contact and Lead: a record whose Email equals a stored
    record's of the same object is a duplicate (a matching rule on Email, exact).

    Like the standard rules (help.salesforce.com "Standard Contact Duplicate Rule",
    "Standard Lead Duplicate Rule"), the rule runs on create, and on edit only when a field
    it matches on changes (help.salesforce.com article 005237351); its alert text is "Use one
    of these records?". Mode ``alert`` (the standard action, Allow with an alert) refuses the
    save unless the request says ``allowSave=true``; mode ``block`` refuses it whatever the
    header says (developer.salesforce.com "Duplicate Rule Header", "DuplicateResult")."""
    sb = batch.sb
    mode = sb.duplicate_rules
    if mode == "off" or obj not in ("Contact", "Lead"):
        return None
    mail = rec.get("Email")
    if not isinstance(mail, str) or not mail:
        return None
    if existing is not None:
        before = existing.get("Email")
        if "Email" not in fields or str(before or "").lower() == mail.lower():
            return None  # the field the rule matches on did not change
    own = existing["Id"] if existing is not None else None
    matches = [i for i in batch.by_email(obj).get(mail.lower(), ()) if i != own]
    if not matches:
        return None
    if mode == "alert" and batch.options.allow_save:
        return None
    error = _err("DUPLICATES_DETECTED", DUPLICATE_ALERT)
    error["duplicateResult"] = _duplicate_result(batch, obj, matches, allow_save=mode == "alert")
    return error


DUPLICATE_ALERT = "Use one of these records?"


def _duplicate_result(
    batch: _Batch, obj: str, matches: list[str], *, allow_save: bool
) -> dict[str, Any]:
    """A DuplicateResult as the REST API renders it on a single-record save: the rule, and
    per matching rule the matched records, their Id only unless the request asked for
    ``includeRecordDetails=true`` (developer.salesforce.com "DuplicateResult",
    "MatchResult", "MatchRecord")."""
    sb = batch.sb
    fields = tuple(sb.schema[obj]) if batch.options.include_record_details else ("Id",)
    records = [
        {
            "additionalInformation": [],
            "fieldDiffs": [],
            "matchConfidence": 100.0,
            "record": sb.to_api(obj, sb.records[obj][rid], fields, batch.version),
        }
        for rid in matches
    ]
    return {
        "allowSave": allow_save,
        "duplicateRule": f"{obj}_Email_Duplicate_Rule",
        "duplicateRuleEntityType": obj,
        "errorMessage": DUPLICATE_ALERT,
        "matchResults": [
            {
                "entityType": obj,
                "errors": [],
                "matchEngine": "ExactMatchEngine",
                "matchRecords": records,
                "rule": f"{obj}_Email_Matching_Rule",
                "size": len(records),
                "success": True,
            }
        ],
    }

"""The simulated account's importer: bulk import validation, queueing and asynchronous
completion.

The HTTP side (``POST /import/bulk_import``, ``GET /import/info``, the per-minute limits) is
``imports.py``; the jobs and the contacts they write are held by `ActiveCampaignSandbox`.
"""

from __future__ import annotations

import uuid
from typing import Any

from syncd.sandbox.activecampaign.state import (
    ActiveCampaignSandbox,
    Contact,
    ImportJob,
    valid_email,
)

BULK_IMPORT_MAX = 250
# Import row keys and the contact attributes they set (email is the match key, never set).
_IMPORT_ENDPOINT = "POST /api/3/import/bulk_import"
_IMPORT_ATTRS = (("firstName", "first_name"), ("lastName", "last_name"), ("phone", "phone"))


def validate_import(contacts: Any) -> list[dict[str, Any]]:
    """Failure reasons for a bulk import request; empty when it may be queued."""
    if not isinstance(contacts, list) or not contacts:
        return [{"index": None, "reasons": ["contacts: at least one contact is required"]}]
    if len(contacts) > BULK_IMPORT_MAX:
        return [
            {
                "index": None,
                "reasons": [
                    f"contacts: a maximum of {BULK_IMPORT_MAX} contacts may be imported "
                    f"per request ({len(contacts)} given)"
                ],
            }
        ]
    out = []
    for i, row in enumerate(contacts):
        email = str(row.get("email") or "") if isinstance(row, dict) else ""
        if not email:
            out.append({"index": i, "email": email, "reasons": ["email: required"]})
        elif not valid_email(email):
            out.append({"index": i, "email": email, "reasons": ["email: invalid format"]})
    return out


def queue_import(sb: ActiveCampaignSandbox, contacts: list[dict[str, Any]]) -> ImportJob:
    """Accept a validated import; it ends after `import_latency` (imports run side by
    side: AC's importer works on many batches at once)."""
    now = sb.now()
    job = ImportJob(str(uuid.UUID(int=sb.rng.getrandbits(128))), contacts, 0.0, now)
    job.queued = len(contacts)
    job.ready_at = now + sb.import_latency
    if sb.import_outcome_next > 0:
        job.outcome = sb.import_outcome
        sb.import_outcome_next -= 1
    sb.imports[job.batch_id] = job
    if sb.import_latency <= 0:
        run_import(sb, job)
    else:
        sb._queued.append(job)
    return job


def process_due_imports(sb: ActiveCampaignSandbox) -> None:
    """Apply queued imports whose time has come (only the queued ones are looked at)."""
    if not sb._queued:
        return
    now = sb.now()
    waiting = []
    for job in sb._queued:
        if job.done:
            continue
        if job.ready_at <= now:
            run_import(sb, job)
        else:
            waiting.append(job)
    sb._queued = waiting


def run_import(sb: ActiveCampaignSandbox, job: ImportJob) -> None:
    """Apply one import: upsert by email, tags, fields, list (un)subscriptions.

    The same rules as apply_contact/add_contact_tag/set_membership, inlined: this runs
    once per imported contact. The ledger keeps what changed, not the request's rows, and
    the job forgets its rows once applied (import/info only needs the outcome).
    """
    fail_emails = sb.faults.fail_emails
    now = sb.now()  # one import is applied at one instant
    tag_ids: dict[str, int] = {}  # lower-cased name -> id: one tag lookup per import
    field_keys: dict[int, str] = {}  # field id -> its ledger key ("field:<id>")
    known_fields, known_lists = sb.fields, sb.lists
    by_email, contacts, tags_of = sb.by_email, sb.contacts, sb.tags_of
    success, failure = job.success, job.failure
    contact_ids, contact_tag_ids = sb.ids_of("contact"), sb.ids_of("contactTag")
    rows = job.contacts
    if job.outcome == "failed":
        rows = []  # failed: nothing was applied, and AC will not retry it
    elif job.outcome == "interrupted":
        rows = rows[: len(rows) // 2]  # stopped part way: the first half was applied
    for row in rows:
        email = str(row["email"]).strip()
        low_email = email.lower()
        if low_email in fail_emails:
            failure.append(email)
            continue
        cid = by_email.get(low_email)
        c = contacts.get(cid) if cid is not None else None
        created = c is None or c.deleted
        if created:
            c = Contact(next(contact_ids), email, cdate=now, udate=now)
            sb._add_contact(c)
        assert c is not None
        changed: dict[str, Any] = {}
        for key, attr in _IMPORT_ATTRS:
            value = row.get(attr)
            if value is not None:
                value = str(value)
                if getattr(c, attr) != value:
                    setattr(c, attr, value)
                    changed[key] = value
        for f in row.get("fields") or ():
            fid = int(f["id"])
            if fid in known_fields:
                value = str(f.get("value", ""))
                if c.field_values.get(fid) != value:
                    c.field_values[fid] = value
                    fkey = field_keys.get(fid)
                    if fkey is None:  # one key string per field, not one per contact
                        fkey = field_keys[fid] = f"field:{fid}"
                    changed[fkey] = value
        tags = row.get("tags") or []
        if tags:
            mine = tags_of.setdefault(c.id, {})
            for name in tags:
                low = str(name).strip().lower()
                tid = tag_ids.get(low)
                if tid is None:
                    tid = sb.tag_by_name(str(name)) or sb.create_tag(str(name))
                    if str(sb.tags[tid]["tag"]).lower() == low:  # what tag_by_name finds
                        tag_ids[low] = tid
                if tid not in mine:
                    ctid = next(contact_tag_ids)
                    sb.contact_tags[ctid] = (c.id, tid, now)
                    mine[tid] = ctid
        for subs, status in ((row.get("subscribe"), 1), (row.get("unsubscribe"), 2)):
            for sub in subs or ():
                lid = int(sub["listid"])
                if lid in known_lists:
                    sb._set_membership_at(c.id, lid, status, now)
        c.udate = now
        done = str(c.id)
        if created:  # AC lists the contacts an import created, not those it updated
            success.append(done)
        changed["tags"] = tuple(tags)
        sb.record_write(
            _IMPORT_ENDPOINT, "contact", done, changed, key=low_email, created=created, at=now
        )
    sb.touch()
    # AC promises no order: shuffled, so a client pairing ids with rows by position fails.
    sb.rng.shuffle(success)
    job.contacts = []
    job.done = True

"""In-memory ActiveCampaign account: contacts, tags, lists, fields, accounts, deals, imports.

The HTTP layer lives in ``app.py`` and the route modules, and the importer that validates,
queues and applies bulk imports in ``importer.py``; this module holds the data and the rules AC
applies to it (email uniqueness, unsubscribed contacts staying unsubscribed on imports), so
tests and benchmarks can also seed and inspect it directly.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from syncd.sandbox.clock import time_factor
from syncd.sandbox.common import SandboxBase

# AC answers in the account's timezone with a numeric offset, e.g. 2024-01-02T10:11:12-06:00.
ACCOUNT_TZ = timezone(timedelta(hours=-5))
# How long AC takes to process one bulk import, in real seconds. AC publishes no figure: the
# status page says a batch has no status at all for up to a second after it is queued
# (https://developers.activecampaign.com/reference/bulk-import-status-info) and then moves
# through waiting, claimed and active; imports "take some time" and more under load
# (https://developers.activecampaign.com/reference/bulk-import-contacts: exclude_automations
# "will improve the import time"). 5 s is a middle-of-the-road batch of 250 without
# automations (unverified); `syncd sandbox --ac-import-latency` sets it.
DEFAULT_IMPORT_LATENCY = 5.0
# The share of the latency each status lasts: no status (false), waiting, claimed, then
# active until the end.
_STATUS_STEPS = ((0.1, False), (0.2, "waiting"), (0.3, "claimed"), (1.0, "active"))
IMPORT_OUTCOMES = ("completed", "failed", "interrupted")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Bodies AC answers with. Items marked (unverified) were not confirmed in an official source.
FORBIDDEN_BODY = {"message": "You are not authorized to access this file"}  # (unverified)
RATE_LIMITED_BODY = {"message": "Too Many Requests"}  # (unverified)
UNAVAILABLE_BODY = {"message": "Service Unavailable"}  # (unverified)


def fmt_dt(ts: float) -> str:
    """An epoch timestamp in AC's datetime format."""
    return datetime.fromtimestamp(int(ts), ACCOUNT_TZ).isoformat(timespec="seconds")


def parse_dt(value: str) -> float:
    """A filter datetime (ISO, with or without offset, or a bare date) as epoch seconds."""
    text = value.strip().replace(" ", "T")
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=ACCOUNT_TZ)
    return dt.timestamp()


def valid_email(email: str) -> bool:
    """AC's basic syntax check."""
    return bool(EMAIL_RE.match(email)) and len(email) <= 255


@dataclass(slots=True)
class Contact:
    """One contact row (slots: a big import keeps a million of them)."""

    id: int
    email: str
    first_name: str = ""
    last_name: str = ""
    phone: str = ""
    cdate: float = 0.0
    udate: float = 0.0
    deleted: bool = False
    field_values: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The contact as AC serializes it (ids and flags as strings)."""
        cid = str(self.id)
        return {
            "cdate": fmt_dt(self.cdate),
            "email": self.email,
            "phone": self.phone,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "orgid": "0",
            "orgname": "",
            "bounced_hard": "0",
            "bounced_soft": "0",
            "deleted": "1" if self.deleted else "0",
            "udate": fmt_dt(self.udate),
            "links": {
                "contactTags": f"/api/3/contacts/{cid}/contactTags",
                "contactLists": f"/api/3/contacts/{cid}/contactLists",
                "fieldValues": f"/api/3/contacts/{cid}/fieldValues",
            },
            "id": cid,
            "organization": None,
        }


@dataclass
class ImportJob:
    """A queued bulk import; applied once `ready_at` has passed, ending as `outcome`."""

    batch_id: str
    contacts: list[dict[str, Any]]
    ready_at: float
    queued_at: float = 0.0
    done: bool = False
    queued: int = 0  # how many contacts it had (its rows are dropped once applied)
    outcome: str = "completed"  # or "failed" / "interrupted" (a fault armed by a test)
    success: list[str] = field(default_factory=list)  # ids of the contacts it created
    failure: list[str] = field(default_factory=list)  # emails it rejected

    def status(self, now: float) -> str | bool:
        """What ``import/info`` says: false, waiting, claimed, active, then the outcome."""
        if self.done:
            return self.outcome
        span = self.ready_at - self.queued_at
        for share, status in _STATUS_STEPS:
            if now < self.queued_at + share * span:
                return status
        return "active"


class ActiveCampaignSandbox(SandboxBase):
    """A single simulated ActiveCampaign account."""

    vendor = "activecampaign"

    def __init__(self, seed: int = 42, *, import_latency: float | None = None) -> None:
        super().__init__(seed)
        # Real seconds; the default is scaled by the sandbox time factor (tests run faster,
        # the behaviour stays on).
        self.import_latency = (
            DEFAULT_IMPORT_LATENCY * time_factor() if import_latency is None else import_latency
        )
        # Imports the next ones end with instead of completing (``POST /_sandbox/faults``
        # ``{"import_outcome": "failed" | "interrupted", "import_outcome_next": N}``).
        self.import_outcome = "completed"
        self.import_outcome_next = 0
        # When each bulk_import of several contacts, and of one, was accepted (rate limits).
        self.import_times: list[float] = []
        self.single_import_times: list[float] = []
        self.contacts: dict[int, Contact] = {}
        self._ids: list[int] = []  # ascending; contacts are never physically removed
        self.by_email: dict[str, int] = {}
        self.tags: dict[int, dict[str, Any]] = {}
        self.contact_tags: dict[int, tuple[int, int, float]] = {}  # id -> (contact, tag, cdate)
        self.tags_of: dict[int, dict[int, int]] = {}  # contact -> {tag id: contactTag id}
        self.lists: dict[int, dict[str, Any]] = {}
        self.memberships: dict[tuple[int, int], dict[str, Any]] = {}  # (contact, list)
        self.fields: dict[int, dict[str, Any]] = {}
        self.accounts: dict[int, dict[str, Any]] = {}
        self.deals: dict[int, dict[str, Any]] = {}
        self.campaigns: dict[int, dict[str, Any]] = {}  # id -> {name, list, sdate}
        self.broadcasts: list[tuple[int, int, int]] = []  # (campaign, list, contact) sends
        self.imports: dict[str, ImportJob] = {}
        self._queued: list[ImportJob] = []  # imports not yet applied, oldest first
        self.live_count = 0  # contacts not deleted: meta.total of the unfiltered list
        self.request_times: list[float] = []  # wall clock of every API request received
        self._next: dict[str, Iterator[int]] = {}
        self.version = 0  # bumps on every change; keys the meta.total cache
        self._total_cache: dict[tuple[Any, ...], tuple[int, int]] = {}

    def apply_faults(self, body: dict[str, Any]) -> None:
        """Faults, and how the next imports end (``import_outcome``, ``import_outcome_next``)."""
        if "import_outcome" in body:
            outcome = str(body["import_outcome"])
            if outcome not in IMPORT_OUTCOMES:
                raise ValueError(f"import_outcome must be one of {', '.join(IMPORT_OUTCOMES)}")
            self.import_outcome = outcome
            self.import_outcome_next = int(body.get("import_outcome_next", 1))
        super().apply_faults(body)

    def reset(self) -> None:
        """Clear faults (imports complete again), ledger and counters; keep the data."""
        super().reset()
        self.import_outcome, self.import_outcome_next = "completed", 0

    def error_response(self, status: int, retry_after: float | None) -> web.Response:
        """AC's bodies for injected 429/5xx; Retry-After in whole seconds."""
        headers = {"Retry-After": f"{math.ceil(retry_after)}"} if retry_after is not None else {}
        body = RATE_LIMITED_BODY if status == 429 else UNAVAILABLE_BODY
        return web.json_response(body, status=status, headers=headers)

    # ---- ids and clocks -------------------------------------------------------------
    def next_id(self, kind: str) -> int:
        """The next id of a resource kind."""
        return next(self.ids_of(kind))

    def ids_of(self, kind: str) -> Iterator[int]:
        """The id sequence of a resource kind (1, 2, ...): `next_id` draws from it, and so
        may a loop that makes many ids of one kind (an import) without a call per id."""
        ids = self._next.get(kind)
        if ids is None:
            ids = self._next[kind] = itertools.count(1)
        return ids

    def now(self) -> float:
        """The account clock (epoch seconds)."""
        return time.time()

    def touch(self) -> None:
        """Note that data changed."""
        self.version += 1

    # ---- contacts --------------------------------------------------------------------
    def insert_contact(self, email: str, **attrs: Any) -> Contact:
        """Create a contact row (no ledger entry; callers record writes)."""
        now = float(attrs.pop("cdate", self.now()))
        udate = float(attrs.pop("udate", now))
        c = Contact(id=self.next_id("contact"), email=email, cdate=now, udate=udate, **attrs)
        self._add_contact(c)
        self.touch()
        return c

    def insert_contact_at(self, cid: int, email: str) -> Contact:
        """Create a contact under a given id (a person's edit in the UI, for tests)."""
        now = self.now()
        c = Contact(id=cid, email=email, cdate=now, udate=now)
        self.contacts[cid] = c
        bisect.insort(self._ids, cid)
        self.by_email[email.lower()] = cid
        self.live_count += 1
        # Ids the API hands out later must not meet this one.
        self._next["contact"] = itertools.count(self._ids[-1] + 1)
        self.touch()
        return c

    def _add_contact(self, c: Contact) -> None:
        """File a new contact row by id and email (no touch: imports touch once)."""
        self.contacts[c.id] = c
        self._ids.append(c.id)
        self.by_email[c.email.lower()] = c.id
        self.live_count += 0 if c.deleted else 1

    def contact_by_email(self, email: str) -> Contact | None:
        """A live contact by email, case-insensitively."""
        cid = self.by_email.get(email.strip().lower())
        c = self.contacts.get(cid) if cid is not None else None
        return c if c is not None and not c.deleted else None

    def live_contact(self, cid: int) -> Contact | None:
        """A contact that exists and is not deleted."""
        c = self.contacts.get(cid)
        return c if c is not None and not c.deleted else None

    def apply_contact(self, c: Contact, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """Set standard attributes and field values; returns what changed."""
        changed: dict[str, Any] = {}
        for key, attr in (
            ("firstName", "first_name"),
            ("lastName", "last_name"),
            ("phone", "phone"),
            ("email", "email"),
        ):
            if key in attrs and attrs[key] is not None:
                value = str(attrs[key])
                if getattr(c, attr) != value:
                    if attr == "email":
                        self.by_email.pop(c.email.lower(), None)
                        self.by_email[value.lower()] = c.id
                    setattr(c, attr, value)
                    changed[key] = value
        for fid, value in attrs.get("_fields", {}).items():
            if c.field_values.get(fid) != value:
                c.field_values[fid] = value
                changed[f"field:{fid}"] = value
        c.udate = self.now()
        self.touch()
        return changed

    def delete_contact(self, c: Contact) -> None:
        """AC keeps deleted contacts flagged; they leave lists and searches."""
        if not c.deleted:
            self.live_count -= 1
        c.deleted = True
        c.udate = self.now()
        self.by_email.pop(c.email.lower(), None)
        self.touch()
        self.record_write("DELETE /contacts/{id}", "contact", str(c.id), {}, key=c.email)

    def contacts_after(self, id_greater: int) -> Iterable[Contact]:
        """Contacts in ascending id order, starting after `id_greater`."""
        start = bisect.bisect_right(self._ids, id_greater)
        for cid in self._ids[start:]:
            yield self.contacts[cid]

    def contacts_before_end(self, id_greater: int) -> Iterable[Contact]:
        """Contacts in descending id order, down to (excluding) `id_greater`."""
        start = bisect.bisect_right(self._ids, id_greater)
        for pos in range(len(self._ids) - 1, start - 1, -1):
            yield self.contacts[self._ids[pos]]

    def cached_total(self, key: tuple[Any, ...], compute: Any) -> int:
        """meta.total for a filter set, recomputed only after data changed."""
        hit = self._total_cache.get(key)
        if hit is not None and hit[0] == self.version:
            return hit[1]
        total = int(compute())
        self._total_cache[key] = (self.version, total)
        return total

    # ---- tags and lists --------------------------------------------------------------
    def tag_by_name(self, name: str) -> int | None:
        """A tag id by exact, case-insensitive name."""
        low = name.strip().lower()
        for tid, t in self.tags.items():
            if str(t["tag"]).lower() == low:
                return tid
        return None

    def create_tag(self, name: str, tag_type: str = "contact", description: str = "") -> int:
        """Add a tag."""
        tid = self.next_id("tag")
        self.tags[tid] = {
            "tag": name,
            "tagType": tag_type,
            "description": description,
            "cdate": self.now(),
        }
        self.touch()
        return tid

    def add_contact_tag(self, cid: int, tid: int) -> tuple[int, bool]:
        """Tag a contact; returns the contactTag id and whether it was new."""
        mine = self.tags_of.setdefault(cid, {})
        if tid in mine:
            return mine[tid], False
        ctid = self.next_id("contactTag")
        self.contact_tags[ctid] = (cid, tid, self.now())
        mine[tid] = ctid
        c = self.contacts[cid]
        c.udate = self.now()
        self.touch()
        return ctid, True

    def remove_contact_tag(self, ctid: int) -> bool:
        """Untag; False when the contactTag does not exist."""
        row = self.contact_tags.pop(ctid, None)
        if row is None:
            return False
        cid, tid, _ = row
        self.tags_of.get(cid, {}).pop(tid, None)
        if cid in self.contacts:
            self.contacts[cid].udate = self.now()
        self.touch()
        return True

    def set_membership(self, cid: int, lid: int, status: int, *, keep_unsub: bool) -> int:
        """Set a contact's status on a list; with keep_unsub an unsubscribe is never undone."""
        now = self.now()
        row = self.memberships.get((cid, lid))
        if row is None:
            row = {"id": self.next_id("contactList"), "status": status, "sdate": now}
            self.memberships[(cid, lid)] = row
        elif not (keep_unsub and row["status"] == 2 and status == 1):
            row["status"] = status
        row["udate"] = now
        self.touch()
        return int(row["status"])

    def _set_membership_at(self, cid: int, lid: int, status: int, now: float) -> None:
        """set_membership with keep_unsub, at a given instant (imports); no touch."""
        row = self.memberships.get((cid, lid))
        if row is None:
            self.memberships[(cid, lid)] = {
                "id": self.next_id("contactList"),
                "status": status,
                "sdate": now,
                "udate": now,
            }
            return
        if not (row["status"] == 2 and status == 1):
            row["status"] = status
        row["udate"] = now

    def membership_json(self, cid: int, lid: int) -> dict[str, Any]:
        """A contactList object."""
        row = self.memberships[(cid, lid)]
        return {
            "contact": str(cid),
            "list": str(lid),
            "status": str(row["status"]),
            "sdate": fmt_dt(row["sdate"]),
            "udate": fmt_dt(row["udate"]),
            "id": str(row["id"]),
        }

    # ---- fast loading for benchmarks -------------------------------------------------
    def bulk_load(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert contacts directly (no ledger, no validation); returns how many."""
        n = 0
        for row in rows:
            self.insert_contact(
                str(row["email"]),
                first_name=str(row.get("firstName", "")),
                last_name=str(row.get("lastName", "")),
                phone=str(row.get("phone", "")),
                cdate=float(row.get("cdate", self.now())),
                udate=float(row.get("udate", row.get("cdate", self.now()))),
            )
            n += 1
        return n

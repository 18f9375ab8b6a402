"""What every fault scenario shares: sizes, a webhook load that keeps a history, the checker.

Each change sent carries a sequence number in the contact's first name (``s<seq>``); the
sequence grows per record and one record's changes are sent one after another. At the end
the history is checked against the Salesforce simulator's records and write ledger:

- missing: a record with an acknowledged (2xx) change whose CRM value is older than it, or
  that has no CRM record at all;
- applied twice: two CRM records for one hub record, or a write that put an older sequence
  over a newer one (replaying the same upsert is idempotent and allowed).

Sizes: the issue's full sizes with ``SYNCD_FAULTS_FULL=1``, a short variant otherwise.
"""

from __future__ import annotations

import http.client
import os
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.e2e.daemon import DaemonProcess
from tests.e2e.env import AC_HOOK, Env, hub_edit, queue_counts, sf_records

FULL = os.environ.get("SYNCD_FAULTS_FULL", "") == "1"
CID_BASE = 100_000
# Pulls stay out of the way unless a scenario wants them: only the inbound direction writes.
INBOUND_ONLY = """
[sync.objects.contact]
direction = "hub-to-crm"
[sync.objects.lead]
direction = "hub-to-crm"
"""
FAST_HTTP = """
[crm.http]
connect_timeout = 2
read_timeout = 5
retry_attempts = 5
retry_base_delay = 0.2
retry_max_delay = 1
"""


def pick(short: Any, full: Any) -> Any:
    """The full-size value under SYNCD_FAULTS_FULL=1, else the short one."""
    return full if FULL else short


@dataclass(frozen=True)
class Send:
    """One attempt to deliver one change: HTTP status (0 = no answer) and when."""

    record: int
    seq: int
    status: int
    sent: float
    answered: float
    port: int


class WebhookLoad:
    """ActiveCampaign `update` webhooks at a steady rate, with a history of every attempt.

    Worker w owns the records r with r % threads == w, so one record's changes go out in
    sequence order. A change that is not answered 2xx is retried (as a sender that retries
    would) until it is, unless `retry` is off.
    """

    def __init__(
        self,
        env: Env,
        ports: Callable[[int], list[int]],
        *,
        records: int,
        total: int,
        rate: float,
        threads: int = 6,
        retry: bool = True,
        retry_delay: float = 0.2,
        offset: int = 0,
        acked: dict[int, int] | None = None,
    ) -> None:
        assert records % threads == 0, "records must be a multiple of threads"
        self._env = env
        self._ports = ports
        self.records, self.total, self.rate, self.threads = records, total, rate, threads
        self.retry, self.retry_delay = retry, retry_delay
        self.sends: list[Send] = []
        self.offset = offset  # sequence numbers start here (a later load continues a history)
        self.acked: dict[int, int] = dict(acked or {})
        self.issued: dict[int, int] = {}
        self.edited: dict[int, int] = {}  # per record, the newest edit made in the hub
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self.started = 0.0

    @staticmethod
    def cid(record: int) -> int:
        """The hub contact id of a record."""
        return CID_BASE + record

    def start(self) -> WebhookLoad:
        """Begin sending in background threads."""
        self.started = time.monotonic()
        for w in range(self.threads):
            t = threading.Thread(target=self._work, args=(w,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def join(self, timeout: float) -> None:
        """Wait until every change was sent (and, with retry, acknowledged)."""
        deadline = time.monotonic() + timeout
        for t in self._workers:
            t.join(max(deadline - time.monotonic(), 0.01))
        if any(t.is_alive() for t in self._workers):
            self.stop()
            raise AssertionError(f"webhook load not finished in {timeout}s: {self.summary()}")

    def stop(self) -> None:
        """Stop sending (threads finish their current attempt)."""
        self._stop.set()
        for t in self._workers:
            t.join(15)

    @property
    def done(self) -> bool:
        """All workers finished."""
        return bool(self._workers) and not any(t.is_alive() for t in self._workers)

    def summary(self) -> dict[str, int]:
        """Attempts by status."""
        with self._lock:
            return dict(Counter(s.status for s in self.sends))

    def _work(self, w: int) -> None:
        conns: dict[int, http.client.HTTPConnection] = {}
        attempt = 0
        for i in range(w, self.total, self.threads):
            if self._stop.is_set():
                break
            due = self.started + i / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            record = i % self.records
            seq = self.offset + i
            with self._lock:
                self.issued[record] = seq
            while not self._stop.is_set():
                ports = self._ports(attempt)
                attempt += 1
                port = ports[0]
                status, sent, answered = self._post(conns, port, record, seq)
                with self._lock:
                    self.sends.append(Send(record, seq, status, sent, answered, port))
                    if 200 <= status < 300:
                        self.acked[record] = max(self.acked.get(record, -1), seq)
                if 200 <= status < 300 or not self.retry:
                    break
                time.sleep(self.retry_delay)
        for c in conns.values():
            c.close()

    def _post(
        self, conns: dict[int, http.client.HTTPConnection], port: int, record: int, seq: int
    ) -> tuple[int, float, float]:
        cid = self.cid(record)
        # The person's edit lands in the hub first, then its webhook goes out. A webhook
        # sent again (retried), or one a slow sender thread holds back behind a newer edit
        # of the record, is an old event delivered late: the hub keeps the newer edit.
        with self._lock:
            if seq > self.edited.get(record, -1):
                self.edited[record] = seq
                hub_edit(self._env, cid, first=f"s{seq}")
        form = {
            "type": "update",
            "contact[id]": str(cid),
            "contact[email]": f"person{cid}@example.com",
            "contact[first_name]": f"s{seq}",
            "contact[last_name]": f"Last{cid}",
            "contact[tags]": "added-to-salesforce-contact",
        }
        body = urllib.parse.urlencode(form)
        sent = time.time()
        conn = conns.get(port)
        if conn is None:
            conn = conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        try:
            conn.request(
                "POST",
                AC_HOOK,
                body,
                {"Content-Type": "application/x-www-form-urlencoded"},
            )
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException):
            conn.close()
            del conns[port]
            status = 0
        return status, sent, time.time()


@dataclass
class Report:
    """The outcome of checking a history against the CRM simulator."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)
    writes: int = 0

    @property
    def ok(self) -> bool:
        """missing = 0 and applied-twice = 0."""
        return not (self.missing or self.duplicated or self.regressions)

    def __str__(self) -> str:
        return (
            f"checked={self.checked} writes={self.writes} missing={len(self.missing)}"
            f" {self.missing[:5]} duplicated={len(self.duplicated)} {self.duplicated[:5]}"
            f" regressions={len(self.regressions)} {self.regressions[:5]}"
        )


def _seq(value: Any) -> int | None:
    if isinstance(value, str) and value.startswith("s") and value[1:].isdigit():
        return int(value[1:])
    return None


def check_history(env: Env, acked: dict[int, int]) -> Report:
    """Compare acknowledged changes with the Salesforce simulator's records and ledger."""
    rep = Report(checked=len(acked))
    contacts = sf_records(env, "Contact")
    by_hub: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in contacts:
        by_hub[str(c.get("Syncd_Hub_Id__c"))].append(c)
    emails = Counter(str(c.get("Email", "")).lower() for c in contacts if c.get("Email"))
    rep.duplicated += [f"email {e} x{n}" for e, n in emails.items() if n > 1]
    for record, seq in sorted(acked.items()):
        cid = str(WebhookLoad.cid(record))
        recs = by_hub.get(cid, [])
        if not recs:
            rep.missing.append(f"{cid}: no CRM record (acked s{seq})")
            continue
        if len(recs) > 1:
            rep.duplicated.append(f"{cid}: {len(recs)} CRM records")
        have = _seq(recs[0].get("FirstName"))
        if have is None or have < seq:
            rep.missing.append(f"{cid}: CRM has {recs[0].get('FirstName')}, acked s{seq}")
    ledger = env.sb.run(lambda: list(env.sf.ledger))
    last: dict[str, int] = {}
    for e in ledger:
        if e.object != "Contact":
            continue
        s = _seq(e.fields.get("FirstName"))
        if s is None:
            continue
        rep.writes += 1
        prev = last.get(e.record_id)
        if prev is not None and s < prev:
            rep.regressions.append(f"{e.record_id}: s{s} written over s{prev} (ledger {e.seq})")
        last[e.record_id] = max(s, prev or s)
    return rep


def unsettled(env: Env, d: DaemonProcess, acked: dict[int, int]) -> str:
    """What still stands between now and every acknowledged change in the CRM ('' if none)."""
    try:
        q = queue_counts(d)
    except OSError as e:
        return f"daemon unreachable: {e}"
    if q.get("pending") or q.get("processing"):
        return f"queue {q}"
    missing = check_history(env, acked).missing
    return f"{len(missing)} missing, e.g. {missing[:5]}; queue {q}" if missing else ""


def settled(env: Env, d: DaemonProcess, acked: dict[int, int]) -> bool:
    """Nothing pending or processing and every acknowledged change in the CRM."""
    return not unsettled(env, d, acked)


def wait_settled(
    env: Env, d: DaemonProcess, acked: dict[int, int], timeout: float, what: str
) -> None:
    """Wait until settled; on timeout, say what was left (queue counts, missing changes)."""
    deadline = time.monotonic() + timeout
    while (left := unsettled(env, d, acked)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"timed out waiting for {what}: {left}"


def rss_kb(pid: int) -> int:
    """Resident set size of a process, in kB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def restart(
    env: Env, d: DaemonProcess, extra: str, daemon_extra: str = "", **kw: Any
) -> DaemonProcess:
    """SIGKILL a daemon and start it again on the same port, config and state."""
    d.kill()
    name = d.config.stem
    return env.start(extra, name=name, daemon_extra=daemon_extra, port=d.port, **kw)


class RequestLog:
    """Arrival time of every request a simulator serves, and of every injected 5xx/429.

    Installed by wrapping two methods of the simulator's state object (its middleware calls
    `endpoint_of` on each request and `error_response` for each injected failure).
    """

    def __init__(self, sandbox: Any) -> None:
        self.arrivals: list[tuple[float, str]] = []
        self.failures: list[tuple[float, int, float | None]] = []
        self.hooks: list[Callable[[str], None]] = []
        endpoint_of, error_response = sandbox.endpoint_of, sandbox.error_response

        def on_request(request: Any) -> str:
            name = str(endpoint_of(request))
            self.arrivals.append((time.time(), request.path))
            for hook in self.hooks:
                hook(request.path)
            return name

        def on_failure(status: int, retry_after: float | None) -> Any:
            self.failures.append((time.time(), status, retry_after))
            return error_response(status, retry_after)

        sandbox.endpoint_of = on_request
        sandbox.error_response = on_failure

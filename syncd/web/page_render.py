"""HTML fragments of the overview page, built from the same rows the admin API answers.

Every value passes through `html.escape`; templates are `string.Template` files with no
logic, so there is no build step and no template engine dependency.
"""

from __future__ import annotations

import json
from functools import cache
from html import escape
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import urlencode

from syncd import __version__
from syncd.model import Direction, EntryStatus, ErrorCategory, ObjectType

FILTER_KEYS = (
    "status",
    "object",
    "direction",
    "source",
    "error_category",
    "q",
    "created_after",
    "created_before",
    "updated_after",
    "updated_before",
)


@cache
def template(name: str) -> Template:
    """A template from syncd/web/templates (read once)."""
    text = resources.files("syncd.web").joinpath("templates", name).read_text("utf-8")
    return Template(text)


def e(value: Any) -> str:
    """Escape for HTML text and attributes; None shows as an empty string."""
    return "" if value is None else escape(str(value), quote=True)


def page(
    title: str,
    body: str,
    *,
    csrf: str = "",
    errors: list[dict[str, Any]] | None = None,
    flash: str = "",
    flash_bad: bool = False,
    signed_in: bool = True,
) -> str:
    """A whole page: header, integration-error banner, flash message, body."""
    nav = ""
    if signed_in:
        nav = '<a href="/">Overview</a>'
        if csrf:
            nav += (
                '<form method="post" action="/logout">'
                f'<input type="hidden" name="csrf" value="{e(csrf)}">'
                '<button type="submit">Sign out</button></form>'
            )
    flash_html = ""
    if flash:
        cls = "flash bad" if flash_bad else "flash"
        flash_html = f'<p class="{cls}" role="status">{e(flash)}</p>'
    return template("base.html").substitute(
        title=e(title),
        nav=nav,
        banner=banner(errors or []),
        flash=flash_html,
        body=body,
        version=e(__version__),
    )


def banner(errors: list[dict[str, Any]]) -> str:
    """The integration-errors banner (role=alert), or nothing."""
    if not errors:
        return ""
    items = "".join(
        f"<li><strong>{e(x['direction'])}: {e(x['category'])}</strong> since"
        f" {when(x['since'])} — {e(x['message'])}"
        f'<br><span class="hint">{e(x["hint"])}</span></li>'
        for x in errors
    )
    n = len(errors)
    title = "Integration error" if n == 1 else f"{n} integration errors"
    return (
        f'<div class="banner" role="alert" id="integration-errors"><h2>{title}:'
        f" sync is paused</h2><ul>{items}</ul></div>"
    )


def login_form(error: str = "") -> str:
    """The login form body."""
    err = f'<p class="flash bad" role="alert">{e(error)}</p>' if error else ""
    return template("login.html").substitute(error=err)


def _entries(records: int, entries: int) -> str:
    """The queue entries behind a count of records, when they are more."""
    return f" ({entries} entries)" if entries != records else ""


def health_table(health: dict[str, Any]) -> str:
    """Per-object counts with the failing categories (and hints) and exclusion groups."""
    rows = []
    for obj, h in health["objects"].items():
        fails = "".join(
            f"<li>{e(c['category'])}: {c['count']}{_entries(c['count'], c['entries'])} "
            f'<span class="hint">{e(c["hint"])}</span></li>'
            for c in h["failing"]["by_category"]
        )
        excl = "".join(
            f"<li>{e(g)}: {n}</li>" for g, n in sorted(h["excluded"]["by_group"].items())
        )
        rows.append(
            f'<tr><th scope="row">{e(obj)}</th>'
            f'<td class="num" data-label="Synced">{h["synced"]}</td>'
            f'<td class="num" data-label="Pending">{h["pending"] + h["processing"]}</td>'
            f'<td data-label="Failing">{h["failing"]["total"]}'
            f"{_entries(h['failing']['total'], h['failing']['entries'])}"
            f"{f'<ul>{fails}</ul>' if fails else ''}</td>"
            f'<td data-label="Excluded">{h["excluded"]["total"]}'
            f"{_entries(h['excluded']['total'], h['excluded']['entries'])}"
            f"{f'<ul>{excl}</ul>' if excl else ''}</td></tr>"
        )
    return (
        '<div class="table-wrap"><table class="health"><caption>Per object</caption>'
        '<thead><tr><th scope="col">Object</th><th scope="col">Synced</th>'
        '<th scope="col">Pending</th><th scope="col">Failing records</th>'
        '<th scope="col">Excluded records</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def connectors_table(connectors: list[dict[str, Any]]) -> str:
    """API calls per connector against the vendor quota."""
    if not connectors:
        return '<p class="muted">No connectors running (sync engine not configured).</p>'
    rows = []
    for c in connectors:
        quota = "not reported"
        if c["quota_limit"]:
            quota = f"{c['quota_used']} / {c['quota_limit']} ({c['quota_percent']} %)"
        rows.append(
            f'<tr><th scope="row">{e(c["name"])} ({e(c["side"])})</th><td>{e(quota)}</td>'
            f'<td class="num">{int(c["calls_since_start"])}</td></tr>'
        )
    return (
        '<div class="table-wrap"><table><caption>API calls</caption><thead><tr>'
        '<th scope="col">Connector</th><th scope="col">Vendor quota (last 24 h)</th>'
        '<th scope="col">Calls since start</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def runs_table(runs: list[dict[str, Any]]) -> str:
    """The newest flush, pull per object and run per dbsync, with their counts."""
    if not runs:
        return '<p class="muted">No flush, pull or dbsync has run yet.</p>'
    rows = []
    for r in runs:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(r["counts"].items()) if v)
        what = r["kind"] + (f" {r['name']}" if r["name"] else "")
        error = f'<br><span class="hint">{e(r["error"])}</span>' if r["error"] else ""
        rows.append(
            f'<tr><th scope="row">{e(what)}</th><td>{_badge_run(r["status"])}</td>'
            f"<td>{when(r['started_at'])}</td><td>{e(counts or '—')}{error}</td></tr>"
        )
    return (
        '<div class="table-wrap"><table><caption>Latest runs</caption><thead><tr>'
        '<th scope="col">Run</th><th scope="col">Outcome</th><th scope="col">Started</th>'
        '<th scope="col">Counts</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _badge_run(status: str) -> str:
    cls = {
        "succeeded": "processed",
        "failed": "error",
        "interrupted": "error",
        "running": "pending",
    }.get(status, "")
    return f'<span class="status status-{cls}">{e(status)}</span>'


def _select(name: str, label: str, options: list[str], current: str) -> str:
    opts = '<option value="">any</option>' + "".join(
        f'<option value="{e(o)}"{" selected" if o == current else ""}>{e(o)}</option>'
        for o in options
    )
    return (
        f'<div><label for="f-{name}">{label}</label>'
        f'<select id="f-{name}" name="{name}">{opts}</select></div>'
    )


def _input(name: str, label: str, current: str, kind: str = "text", hint: str = "") -> str:
    ph = f' placeholder="{e(hint)}"' if hint else ""
    return (
        f'<div><label for="f-{name}">{label}</label>'
        f'<input id="f-{name}" name="{name}" type="{kind}" value="{e(current)}"{ph}></div>'
    )


def filter_fields(query: dict[str, str]) -> str:
    """The queue filter inputs, each with a label."""
    q = {k: query.get(k, "") for k in FILTER_KEYS}
    return "".join(
        [
            _select("status", "Status", [s.value for s in EntryStatus], q["status"]),
            _select("object", "Object", [o.value for o in ObjectType], q["object"]),
            _select("direction", "Direction", [d.value for d in Direction], q["direction"]),
            _input("source", "Source", q["source"], hint="webhook, poll, pull, dbsync name"),
            _select(
                "error_category",
                "Error category",
                [c.value for c in ErrorCategory],
                q["error_category"],
            ),
            _input("q", "Email or name", q["q"], kind="search"),
            _input("created_after", "Created after", q["created_after"], hint="2026-01-31T08:00"),
            _input("updated_after", "Changed after", q["updated_after"], hint="2026-01-31T08:00"),
        ]
    )


def filter_hidden(query: dict[str, str]) -> str:
    """The current filter as hidden inputs (for 'retry all errors matching the filter')."""
    return "".join(
        f'<input type="hidden" name="f_{k}" value="{e(query[k])}">'
        for k in FILTER_KEYS
        if query.get(k)
    )


def queue_table(rows: list[dict[str, Any]], query: dict[str, str]) -> str:
    """The queue rows with a selection checkbox and a link to each entry."""
    back = urlencode({k: v for k, v in query.items() if v})
    body = []
    for r in rows:
        who = e(r["name"] or "—")
        link = f"/entry/{r['id']}" + (f"?{e(back)}" if back else "")
        check = (
            f'<input type="checkbox" name="ids" value="{r["id"]}" id="sel-{r["id"]}"'
            f' aria-label="Select entry {r["id"]}">'
            if r["status"] == "error"
            else ""
        )
        body.append(
            f'<tr data-id="{r["id"]}"><td data-label="Select">{check}</td>'
            f'<td data-label="Entry"><a href="{link}">#{r["id"]}</a></td>'
            f'<td data-label="Record">{who}<br><span class="muted">{e(r["email"])}</span></td>'
            f'<td data-label="Object">{e(r["object"])}</td>'
            f'<td data-label="Direction">{e(r["direction"])}</td>'
            f'<td data-label="Status">{_badge(r["status"])}</td>'
            f'<td data-label="Initiated">{when(r["created_at"])}</td>'
            f'<td data-label="Changed">{when(r["updated_at"])}</td>'
            f'<td data-label="Attempts" class="num">{r["attempts"]}</td>'
            f'<td data-label="Error">{_error_cell(r)}</td></tr>'
        )
    if not body:
        body.append('<tr><td colspan="10" class="muted">No entries match.</td></tr>')
    return (
        '<table class="queue"><caption>Queue entries, newest first</caption><thead><tr>'
        '<th scope="col"><input type="checkbox" id="select-all" aria-label="Select all'
        ' errors"></th><th scope="col">Entry</th><th scope="col">Record</th>'
        '<th scope="col">Object</th><th scope="col">Direction</th><th scope="col">Status</th>'
        '<th scope="col">Initiated</th><th scope="col">Changed</th>'
        '<th scope="col">Attempts</th><th scope="col">Error</th></tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _error_cell(row: dict[str, Any]) -> str:
    """The category and the message (shortened; the whole one in the title and the detail)."""
    cat, msg = row["error_category"], row.get("error_message") or ""
    if not cat:
        return ""
    short = msg if len(msg) <= 120 else msg[:119] + "…"
    text = f"<strong>{e(cat)}</strong>" + (f": {e(short)}" if short else "")
    return f'<span title="{e(msg)}">{text}</span>' if short != msg else text


def paused_notice(directions: dict[str, dict[str, Any]]) -> str:
    """A notice per direction an operator paused (it stays paused, on every instance)."""
    items = [
        f'<p class="flash bad paused" role="status" data-direction="{e(d)}">'
        f"<strong>{e(d.capitalize())} sync is paused</strong> by an operator: changes keep"
        f" queueing and nothing is written until it is resumed"
        f" (<code>syncd resume {e(d)}</code>).</p>"
        for d, v in sorted(directions.items())
        if v.get("paused")
    ]
    return "".join(items)


def pager(query: dict[str, str], next_cursor: int | None) -> str:
    """Links to the newest page and the next (older) page."""
    links = []
    base = {k: v for k, v in query.items() if v and k != "before"}
    if query.get("before"):
        links.append(f'<a href="/?{e(urlencode(base))}">Newest</a>')
    if next_cursor is not None:
        links.append(f'<a href="/?{e(urlencode({**base, "before": next_cursor}))}">Older →</a>')
    return f'<nav aria-label="Pages" class="actions">{" ".join(links)}</nav>' if links else ""


def kv_table(values: dict[str, Any], caption: str, left: str, right: str) -> str:
    """A two-column table of names and values (empty mapping: a short note)."""
    if not values:
        return '<p class="muted">None.</p>'
    rows = "".join(
        f'<tr><th scope="row">{e(k)}</th><td>{e(_show(v))}</td></tr>'
        for k, v in sorted(values.items())
    )
    return (
        f'<div class="table-wrap"><table><caption>{e(caption)}</caption><thead><tr>'
        f'<th scope="col">{e(left)}</th><th scope="col">{e(right)}</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )


def when(stamp: str | None) -> str:
    """A timestamp shown to the second in UTC, the full value kept in `datetime`."""
    if not stamp:
        return ""
    short = stamp[:19].replace("T", " ") + " UTC"
    return f'<time datetime="{e(stamp)}">{e(short)}</time>'


def _badge(status: str) -> str:
    return f'<span class="status status-{e(status)}">{e(status)}</span>'


def _cell(key: str, value: Any) -> str:
    if key == "status":
        return _badge(value)
    if key.endswith("_at"):
        return when(value)
    return e(value)


def _show(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, default=str)


def entry_page(d: dict[str, Any], csrf: str, back: str) -> str:
    """The detail view of one entry with its retry/delete buttons."""
    summary = "".join(
        f"<dt>{label}</dt><dd>{_cell(key, d[key])}</dd>"
        for key, label in (
            ("name", "Record"),
            ("email", "Email"),
            ("record_key", "Record id (source)"),
            ("object", "Object"),
            ("direction", "Direction"),
            ("source", "Source"),
            ("event", "Event"),
            ("status", "Status"),
            ("created_at", "Initiated"),
            ("updated_at", "Last changed"),
            ("attempts", "Attempts"),
            ("next_attempt_at", "Next attempt"),
            ("excluded_reason", "Excluded because"),
        )
        if d.get(key) not in (None, "")
    )
    err = d.get("error")
    error_html = ""
    if err:
        error_html = (
            '<div class="error-box" role="region" aria-label="Error"><h2>Error</h2>'
            f'<dl class="kv"><dt>Category</dt><dd>{e(err["category"])}</dd>'
            f"<dt>Vendor code</dt><dd><code>{e(err['code'])}</code></dd>"
            f"<dt>Vendor message</dt><dd>{e(err['message'])}</dd>"
            f"<dt>What to do</dt><dd>{e(err['hint'])}</dd></dl></div>"
        )
    hidden = f'<input type="hidden" name="csrf" value="{e(csrf)}">'
    hidden += f'<input type="hidden" name="back" value="{e(back)}">'
    buttons = ""
    if d["status"] == "error":
        buttons += (
            f'<form method="post" action="/entry/{d["id"]}/retry">{hidden}'
            '<button type="submit" name="now" value="1">Retry now</button></form>'
        )
    if d["status"] == "pending":
        buttons += (
            f'<form method="post" action="/entry/{d["id"]}/delete" data-confirm='
            f'"Delete entry {d["id"]} from the buffer? It will not be sent.">{hidden}'
            '<button type="submit" class="danger">Delete pending entry</button></form>'
        )
    target = d.get("transferred", {}).get("object", "")
    return template("entry.html").substitute(
        back=e(back or "/"),
        id=d["id"],
        summary=f'<dl class="kv">{summary}</dl>',
        error=error_html,
        buttons=buttons,
        transferred=kv_table(
            d["transferred_fields"], f"Written to {target or 'the target'}", "Field", "Value"
        ),
        skipped=kv_table(d["skipped_fields"], "Skipped", "Field", "Why"),
        payload=f"<pre>{e(json.dumps(d['payload'], indent=2, sort_keys=True, default=str))}</pre>",
    )

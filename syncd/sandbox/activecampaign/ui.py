"""What a person does in ActiveCampaign's own screens, for tests and the demo: edit a
contact (its fields, custom fields and tags) without going through the API.

A real webhook describes a contact that exists in the account; the tests and the demo make
the simulated account hold the contact a webhook describes before they send it, so the
daemon's read-back of the contact sees what the person saw. Nothing here is recorded in the
API ledger: it is not a call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from syncd.sandbox.activecampaign.state import ActiveCampaignSandbox, Contact

_STANDARD = {"email": "email", "firstName": "first_name", "lastName": "last_name", "phone": "phone"}


def edit_contact(
    sb: ActiveCampaignSandbox,
    cid: int,
    values: Mapping[str, str | None],
    *,
    tags: Iterable[str] | None = None,
) -> Contact:
    """Create contact `cid` if the account has none, set `values` and, if given, make its
    tags exactly `tags`.

    `values` takes the API's names (``email``, ``firstName``, ``lastName``, ``phone``) and,
    for custom fields, a field's personalization tag or title (``company``; a field the
    account lacks is added first); None clears.
    """
    c = sb.contacts.get(cid)
    if c is None:
        c = sb.insert_contact_at(cid, str(values.get("email") or f"contact{cid}@example.com"))
    now = sb.now()
    for key, value in values.items():
        attr = _STANDARD.get(key)
        if attr == "email" and value:
            sb.by_email.pop(c.email.lower(), None)
            sb.by_email[str(value).lower()] = c.id
        if attr is not None:
            setattr(c, attr, str(value or ""))
            continue
        fid = _field_id(sb, key)
        if value is None or value == "":
            c.field_values.pop(fid, None)
        else:
            c.field_values[fid] = str(value)
    if tags is not None:
        _set_tags(sb, c.id, set(tags))
    c.udate = now
    sb.touch()
    return c


def _field_id(sb: ActiveCampaignSandbox, name: str) -> int:
    low = name.strip().lower()
    for fid, f in sb.fields.items():
        if low in (str(f.get("perstag", "")).lower(), str(f.get("title", "")).lower()):
            return fid
    # The person adds the field first, as they would in the account's settings.
    fid = sb.next_id("field")
    sb.fields[fid] = {"title": name, "perstag": name.upper(), "type": "text", "isrequired": "0"}
    return fid


def _set_tags(sb: ActiveCampaignSandbox, cid: int, wanted: set[str]) -> None:
    have = {str(sb.tags[tid]["tag"]).lower(): ctid for tid, ctid in sb.tags_of.get(cid, {}).items()}
    for name in wanted:
        if name.lower() not in have:
            tid = sb.tag_by_name(name) or sb.create_tag(name)
            sb.add_contact_tag(cid, tid)
    lowered = {n.lower() for n in wanted}
    for name, ctid in have.items():
        if name not in lowered:
            sb.remove_contact_tag(ctid)


def ac_custom_values(sb: ActiveCampaignSandbox, c: Contact) -> dict[str, str]:
    """A contact's custom field values by the field's name as syncd knows it (the
    personalization tag in lower case)."""
    out = {}
    for fid, value in c.field_values.items():
        f = sb.fields.get(fid, {})
        out[str(f.get("perstag") or f.get("title") or fid).lower()] = value
    return out

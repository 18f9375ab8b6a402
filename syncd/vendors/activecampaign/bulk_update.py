"""Updates of many linked contacts through ActiveCampaign's bulk import.

AC has no batch update: `PUT /contacts/{id}` changes one contact a call, so a pull of 186
changed linked contacts cost 186 calls against AC's 5 a second. Its bulk import updates
the contacts whose email it already has ("Contacts that already exist are updated",
https://developers.activecampaign.com/reference/bulk-import-contacts), 250 a call. An
update by id becomes an import row keyed by the contact's current email, read for all of
them at once (one ``GET /contacts?ids[]=`` per 100).

Rows that stay on `PUT` by id, where an import would do something else:
- the update changes the email: an import keyed by the new email would create a contact;
- the update clears a field: an import may leave an empty value out rather than clear it;
- the contact is no longer there: the `PUT` answers its 404 (the caller records it);
- two items read with one email (they would land on one contact);
- a row the import refused (the `PUT` says why, or succeeds), or one the import created a
  new contact for: the email changed in AC between the read and the import; the linked
  contact is still updated by id and the extra one is logged for the operator. A change
  of email in that window that hands the old email to *another* contact cannot be seen
  from the import's answer: the window is one read and one import.

Call cost for n updates: ceil(n/100) email reads + ceil(n/250) imports and their status
reads, instead of n calls.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from syncd.logging import get_logger
from syncd.model import ErrorCategory, WriteItem, WriteOp, WriteResult
from syncd.vendors.activecampaign.bulk import import_contacts
from syncd.vendors.activecampaign.imports import contact_ids_by_email
from syncd.vendors.activecampaign.write import AcApi, filled, write_contacts

log = get_logger("syncd.activecampaign")


def _empty(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


async def update_contacts(api: AcApi, items: Sequence[WriteItem]) -> list[WriteResult]:
    """Update contacts by id (every item has one), importing those an import updates the
    same way and writing the others one by one; one result per item, in order."""
    ids = [str(i.id) for i in items]
    email_of = {cid: email for email, cid in (await contact_ids_by_email(api.call, ids)).items()}
    imported: list[int] = []
    rows: list[WriteItem] = []
    keyed = Counter(email_of.get(str(i.id)) for i in items)
    for pos, item in enumerate(items):
        current = email_of.get(str(item.id))
        fields = dict(item.fields)
        new_email = fields.get("email")
        moves = isinstance(new_email, str) and new_email.strip().lower() != current
        # One email for two items would put both on one contact: those go by id.
        shared = keyed[current] > 1
        if current is None or moves or shared or any(_empty(v) for v in fields.values()):
            continue
        fields["email"] = current
        imported.append(pos)
        rows.append(WriteItem(fields, id=item.id))
    results: list[WriteResult | None] = [None] * len(items)
    answers = await import_contacts(api, rows) if rows else None
    if answers is None:
        imported = []  # too few for an import: every item goes one by one
    for pos, res in zip(imported, answers or (), strict=True):
        if res.ok and not res.created:
            # Updated: the contact of the id (AC does not list updated contacts).
            results[pos] = WriteResult(ok=True, id=str(items[pos].id))
        elif res.ok:
            # Created: the contact's email changed in AC between the read and the import,
            # which made a new contact of the old email. The linked contact is still
            # written by id below; the extra one is named for the operator.
            log.warning(
                "ac_import_created_on_update",
                contact=str(items[pos].id),
                created=res.id,
                why="its email changed in ActiveCampaign while the update was on its way",
            )
        elif res.error_category is not ErrorCategory.REJECTED:
            results[pos] = res  # the import as a whole failed: sent again next time
        # else: this row was refused by the import; a PUT by id says why, or succeeds
    rest = [pos for pos in range(len(items)) if results[pos] is None]
    if rest:
        singles = await write_contacts(api, WriteOp.UPDATE, [items[p] for p in rest])
        for pos, res in zip(rest, singles, strict=True):
            results[pos] = res
    return filled(results)

"""Two-way sync judged by the final state of both systems: the daemon between the Salesforce
simulator and a hub simulator, edits on both sides, flushes and pulls in every order."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.sandbox.activecampaign.ui import edit_contact
from syncd.sandbox.runner import HS_CLIENT_SECRET
from syncd.sandbox.salesforce.soql import now_utc
from syncd.vendors.hubspot.signature import compute_signature_v3
from tests.e2e.daemon import DaemonProcess
from tests.e2e.env import AC_HOOK, FORM, Env, hub_edit, sf_records

EVERYTHING = (
    "\n[inbound]\nflush_size = 1000\nflush_interval = 600\n"
    '[sync.objects.contact]\nselection = "criteria"\n'
    'criteria = { field = "Email", op = "is_not_null" }\n'
)
# The hubs' own names of the standard fields (AC's API names, HubSpot's properties).
NAMES = {
    "activecampaign": {"FirstName": "firstName", "LastName": "lastName", "Phone": "phone"},
    "hubspot": {"FirstName": "firstname", "LastName": "lastname", "Phone": "phone"},
}


class TwoSides:
    """One linked contact, the daemon, and the edits, flushes and pulls a test makes."""

    def __init__(self, env: Env, hub: str, extra: str = "") -> None:
        self.env, self.hub = env, hub
        self.d: DaemonProcess = env.start(EVERYTHING + extra, hub=hub)
        self.crm_id = str(
            env.sb.run(
                lambda: env.sf.insert(
                    "Contact",
                    {"FirstName": "Ann", "LastName": "Old", "Email": "ann@x.io", "Phone": "100"},
                )
            )["Id"]
        )
        assert self.pull()["processed"] == 1
        self.hub_id = self._hub_id("ann@x.io")

    # -- the two systems -------------------------------------------------------------------
    def crm(self) -> dict[str, Any]:
        [rec] = [r for r in sf_records(self.env, "Contact") if r["Id"] == self.crm_id]
        return {k: rec.get(k) for k in ("FirstName", "LastName", "Phone")}

    def hub_values(self) -> dict[str, Any]:
        names = NAMES[self.hub]
        if self.hub == "activecampaign":

            def read() -> dict[str, Any]:
                c = self.env.ac.contacts[int(self.hub_id)]
                return {"FirstName": c.first_name, "LastName": c.last_name, "Phone": c.phone}

            return dict(self.env.sb.run(read))

        def read_hs() -> dict[str, Any]:
            rec = self.env.sb.set.state("hubspot").get("contacts", self.hub_id)
            return {crm: rec.properties.get(hub) for crm, hub in names.items()}

        return dict(self.env.sb.run(read_hs))

    def crm_edit(self, **fields: Any) -> None:
        """A person edits the contact in Salesforce."""

        def edit() -> None:
            rec = self.env.sf.records["Contact"][self.crm_id]
            rec.update(fields)
            rec["SystemModstamp"] = now_utc()

        self.env.sb.run(edit)
        time.sleep(1.1)  # SystemModstamp has whole seconds: the next pull must see it as new

    def hub_edit(self, **fields: Any) -> None:
        """A person edits the contact in the hub, which sends its webhook."""
        values = {**self.hub_values(), **fields}
        if self.hub == "activecampaign":
            form = {
                "type": "update",
                **hub_edit(
                    self.env,
                    int(self.hub_id),
                    email="ann@x.io",
                    first=values["FirstName"],
                    last=values["LastName"],
                    tags="created-from-salesforce-contact",
                    fields={"phone": values["Phone"]},
                ),
            }
            form.pop("contact[phone]", None)  # AC leaves out what it does not send
            status, body, _ = self.d.request(
                "POST", AC_HOOK, urllib.parse.urlencode(form).encode(), headers=FORM
            )
            assert status == 200, body
            return
        names = NAMES["hubspot"]

        def edit() -> None:
            hs = self.env.sb.set.state("hubspot")
            rec = hs.get("contacts", self.hub_id)
            hs.update(
                "contacts", rec, {names[k]: v or "" for k, v in fields.items()}, endpoint="ui"
            )

        self.env.sb.run(edit)
        assert post_hubspot(self.d, self.hub_id, names[next(iter(fields))]) == 200

    def flush(self) -> dict[str, int]:
        status, body = self.d.json("POST", "/api/v1/flush?wait=true")
        assert status == 200, body
        return dict(body["counts"])

    def pull(self) -> dict[str, int]:
        status, body = self.d.json("POST", "/api/v1/pulls/contact?wait=true", timeout=120)
        assert status == 200, body
        return dict(body["counts"])

    def _hub_id(self, email: str) -> str:
        if self.hub == "activecampaign":
            return str(self.env.sb.run(lambda: self.env.ac.by_email[email]))
        return str(self.env.sb.run(lambda: self.env.sb.set.state("hubspot").by_email(email).id))


def post_hubspot(d: DaemonProcess, object_id: str, prop: str) -> int:
    body = json.dumps(
        [
            {
                "eventId": int(time.time() * 1000),
                "subscriptionType": "contact.propertyChange",
                "objectId": int(object_id),
                "propertyName": prop,
                "propertyValue": "ignored: the daemon reads the contact",
                "occurredAt": int(time.time() * 1000),
            }
        ]
    ).encode()
    ts = str(int(time.time() * 1000))
    sig = compute_signature_v3(HS_CLIENT_SECRET, "POST", f"{d.base}/webhooks/hubspot", body, ts)
    status, _, _ = d.request(
        "POST",
        "/webhooks/hubspot",
        body,
        headers={
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": sig,
            "X-HubSpot-Request-Timestamp": ts,
        },
    )
    return status


@pytest.fixture(params=["activecampaign", "hubspot"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path, ("salesforce", request.param))
    e.hub = request.param  # type: ignore[attr-defined]
    try:
        yield e
    finally:
        e.close()


def run(sides: TwoSides, order: str) -> None:
    for step in order.split(","):
        sides.flush() if step == "flush" else sides.pull()


def settle(sides: TwoSides) -> None:
    run(sides, "flush,pull")


@pytest.mark.parametrize("order", ["flush,pull", "pull,flush"])
def test_a_salesforce_edit_survives_a_hub_change_of_another_field(env: Env, order: str) -> None:
    sides = TwoSides(env, env.hub)  # type: ignore[attr-defined]
    sides.crm_edit(Phone="555")
    sides.hub_edit(LastName="New")
    run(sides, order)
    settle(sides)
    assert sides.crm() == {"FirstName": "Ann", "LastName": "New", "Phone": "555"}
    assert sides.hub_values() == sides.crm()


@pytest.mark.parametrize(
    "order", ["pull,flush,pull", "flush,pull", "pull,flush", "flush,flush,pull"]
)
@pytest.mark.parametrize("winner", ["crm", "hub"])
def test_a_conflict_ends_on_the_winners_value_on_both_sides(
    env: Env, order: str, winner: str
) -> None:
    sides = TwoSides(env, env.hub, f'\n[sync]\nconflict_winner = "{winner}"\n')  # type: ignore[attr-defined]
    sides.hub_edit(Phone="from-hub")
    sides.crm_edit(Phone="from-crm")
    run(sides, order)
    settle(sides)
    want = "from-crm" if winner == "crm" else "from-hub"
    assert sides.crm()["Phone"] == want
    assert sides.hub_values() == sides.crm()
    # Later pulls keep them so: nothing left to send either way.
    assert sides.pull()["processed"] == 0


@pytest.mark.parametrize("order", ["flush,pull", "pull,flush"])
def test_an_empty_winner_keeps_the_other_sides_value(env: Env, order: str) -> None:
    sides = TwoSides(env, env.hub, '\n[sync]\nconflict_winner = "crm"\n')  # type: ignore[attr-defined]
    sides.crm_edit(Phone=None)
    sides.hub_edit(Phone="from-hub")
    run(sides, order)
    settle(sides)
    assert sides.crm()["Phone"] == "from-hub"
    assert sides.hub_values()["Phone"] == "from-hub"


def test_a_webhook_that_leaves_a_field_out_does_not_blank_it(env: Env) -> None:
    sides = TwoSides(env, env.hub)  # type: ignore[attr-defined]
    sides.hub_edit(FirstName="Anna")  # the ActiveCampaign webhook carries no contact[phone]
    sides.flush()
    sides.crm_edit(LastName="Later")
    sides.pull()
    assert sides.hub_values() == {"FirstName": "Anna", "LastName": "Later", "Phone": "100"}
    assert sides.crm() == sides.hub_values()


def test_custom_field_company_reaches_a_new_lead(tmp_path: Path) -> None:
    env = Env(tmp_path)
    try:
        d = env.start(
            "\n[inbound]\nflush_size = 1000\nflush_interval = 600\n"
            "[sync.objects.lead]\n"
            'mapping = { email = "Email", lastName = "LastName", company = "Company" }\n'
            'required = ["lastName", "company"]\n'
        )
        status, _ = _ac_post(env, d, 77, "added-to-salesforce-lead", {"company": "Initech"})
        assert status == 200
        status, body = d.json("POST", "/api/v1/flush?wait=true")
        assert status == 200 and body["counts"]["processed"] == 1, body
        [lead] = sf_records(env, "Lead")
        assert lead["Company"] == "Initech"
    finally:
        env.close()


def _ac_post(
    env: Env, d: DaemonProcess, cid: int, tags: str, fields: dict[str, str | None]
) -> tuple[int, bytes]:
    env.sb.run(
        lambda: edit_contact(
            env.ac,
            cid,
            {"email": f"p{cid}@x.io", "firstName": "Pat", "lastName": "Lee", **fields},
            tags=[tags],
        )
    )
    # AC's update webhook sends custom fields as a list in no set order: the daemon reads
    # them back from the API instead.
    form = {
        "type": "update",
        "contact[id]": str(cid),
        "contact[email]": f"p{cid}@x.io",
        "contact[tags]": tags,
        "contact[fields][0]": "Initech",
    }
    status, body, _ = d.request(
        "POST", AC_HOOK, urllib.parse.urlencode(form).encode(), headers=FORM
    )
    return status, body

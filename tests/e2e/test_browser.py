"""The overview page in a real headless Chromium (Debian's, driven by Playwright for Python)
against the real daemon with sandbox data: log in, filter by error, open an entry, retry it
until processed, delete a pending entry. Screenshots go to artifacts/ (gitignored)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.daemon import DaemonProcess
from tests.e2e.env import Env, ac_webhook
from tests.e2e.test_overview import start

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def ensure_chromium() -> None:
    """Install Debian's chromium when it is missing (never Playwright's own download)."""
    if CHROMIUM.exists():
        return
    apt = shutil.which("apt-get")
    assert apt, "chromium is missing and apt-get is not available to install it"
    subprocess.run([apt, "install", "-y", "chromium"], check=True, capture_output=True)
    assert CHROMIUM.exists()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ensure_chromium()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.close()


def login(page: Page, base: str, token: str) -> None:
    page.goto(base + "/")
    expect(page).to_have_url(base + "/login")
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def sandbox_data(env: Env, d: DaemonProcess) -> tuple[list[int], list[int]]:
    """Eight contacts: five rejected by Salesforce's validation rule, three processed;
    then four more waiting in the buffer; and an outbound auth error showing."""
    blocked = {f"person{i}@example.com" for i in range(1, 6)}
    env.sb.run(lambda: env.sf.faults.fail_emails.update(blocked))
    for i in range(1, 9):
        assert ac_webhook(env, d, i)[0] == 200
    assert d.json("POST", "/api/v1/flush?wait=true")[1]["counts"]["errors"] == 5
    env.sb.run(lambda: env.sf.faults.fail_emails.clear())
    for i in range(20, 24):
        assert ac_webhook(env, d, i)[0] == 200
    env.sb.run(lambda: env.sf.faults.apply({"revoke_auth": True, "expire_tokens": True}))
    d.json("POST", "/api/v1/pulls/contact?wait=true")
    env.sb.run(lambda: env.sf.faults.apply({"revoke_auth": False}))
    q = "/api/v1/queue?direction=inbound&status="
    errors = [e["id"] for e in d.json("GET", q + "error")[1]["entries"]]
    pending = [e["id"] for e in d.json("GET", q + "pending")[1]["entries"]]
    assert len(errors) == 5 and len(pending) == 4
    return errors, pending


def test_operator_flow(browser: Browser, env: Env, tmp_path: Path) -> None:
    d, _ = start(env, tmp_path)
    errors, _ = sandbox_data(env, d)
    base, token = d.base, d.token
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    ARTIFACTS.mkdir(exist_ok=True)

    # A wrong token stays on the login page.
    login(page, base, "nope")
    expect(page.get_by_role("alert")).to_contain_text("Wrong token")
    login(page, base, token)
    expect(page).to_have_url(base + "/")
    (cookie,) = [c for c in ctx.cookies() if c["name"] == "syncd_session"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert token not in cookie["value"]

    # The banner, the health summary and the queue are there.
    banner = page.locator("#integration-errors")
    expect(banner).to_contain_text("outbound: auth")
    expect(banner).to_contain_text("reconnect the credentials")
    expect(page.get_by_role("table", name="Per object")).to_contain_text("validation: 5")

    # Keyboard: the first Tab lands on the skip link; every form control has a label.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, button')]
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                      && !el.textContent.trim()).map(el => el.outerHTML)"""
    )
    assert unlabeled == []

    # Filter by error (inbound: the daemon's first scheduled pull may add outbound entries).
    page.get_by_label("Status").select_option("error")
    page.get_by_label("Direction").select_option("inbound")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("table.queue tbody tr")).to_have_count(len(errors))
    assert set(page.locator("table.queue .status").all_inner_texts()) == {"error"}
    page.screenshot(path=str(ARTIFACTS / "overview.png"), full_page=True)

    # Open an entry: Salesforce's code and message, and the hint; retry it.
    eid = errors[0]
    page.get_by_role("link", name=f"#{eid}", exact=True).click()
    expect(page.get_by_role("heading", name=f"Queue entry {eid}")).to_be_visible()
    box = page.get_by_role("region", name="Error")
    expect(box).to_contain_text("FIELD_CUSTOM_VALIDATION_EXCEPTION")
    expect(box).to_contain_text("Syncd_Blocked_Email")
    page.screenshot(path=str(ARTIFACTS / "entry-error.png"), full_page=True)
    page.get_by_role("button", name="Retry now").click()
    expect(page.locator(".flash")).to_contain_text("pending again")
    deadline = time.monotonic() + 20
    while not page.locator(".status-processed").count() and time.monotonic() < deadline:
        time.sleep(0.1)
        page.reload()
    expect(page.locator(".status-processed").first).to_be_visible()
    assert d.json("GET", f"/api/v1/queue/{eid}")[1]["status"] == "processed"
    expect(page.get_by_role("table", name="Written to contact")).to_contain_text("LastName")
    page.screenshot(path=str(ARTIFACTS / "entry-processed.png"), full_page=True)

    # The retry's flush sent the waiting entries too; two more changes arrive.
    for i in (30, 31):
        assert ac_webhook(env, d, i)[0] == 200
    q = "/api/v1/queue?direction=inbound&status=pending"
    pending = [e["id"] for e in d.json("GET", q)[1]["entries"]]
    assert len(pending) == 2

    # Delete a pending entry (the confirm dialog is accepted).
    page.goto(base + "/?status=pending&direction=inbound")
    victim = pending[0]
    page.get_by_role("link", name=f"#{victim}", exact=True).click()
    page.get_by_role("button", name="Delete pending entry").click()
    expect(page.locator(".flash")).to_contain_text(f"Entry {victim} deleted")
    assert d.json("GET", f"/api/v1/queue/{victim}")[0] == 404

    # A processed entry offers no delete button.
    page.goto(f"{base}/entry/{eid}")
    expect(page.get_by_role("button", name="Delete pending entry")).to_have_count(0)

    # CSRF: the same POST without the form's token is refused.
    resp = page.request.post(f"{base}/entry/{pending[1]}/delete", form={})
    assert resp.status == 403
    assert d.json("GET", f"/api/v1/queue/{pending[1]}")[0] == 200

    # Bulk retry of everything in error that matches the filter.
    page.goto(base + "/?status=error&direction=inbound")
    page.get_by_role("button", name="Retry all errors matching the filter").click()
    expect(page.locator(".flash")).to_contain_text(f"{len(errors) - 1} entries back")

    # Phone layout: rows become cards, nothing scrolls sideways.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    ppage = phone.new_page()
    login(ppage, base, token)
    ppage.goto(base + "/?status=processed")
    assert ppage.evaluate("document.documentElement.scrollWidth") <= 391
    ppage.screenshot(path=str(ARTIFACTS / "overview-phone.png"))
    ppage.locator("table.queue").scroll_into_view_if_needed()
    ppage.screenshot(path=str(ARTIFACTS / "overview-phone-queue.png"))
    phone.close()

    # Signing out ends the session.
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(base + "/login")
    page.goto(base + "/")
    expect(page).to_have_url(base + "/login")
    ctx.close()


def run_cli(d: DaemonProcess, *args: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "syncd", *args, "--config", str(d.config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_paused_direction_error_messages_and_logout_everywhere(
    browser: Browser, env: Env, tmp_path: Path
) -> None:
    """A paused direction shows on the page, in `syncd status` and `syncd health`; the
    queue's error column carries the message; a signed-out cookie is dead in any browser."""
    d, _ = start(env, tmp_path)
    errors, _ = sandbox_data(env, d)
    message = d.json("GET", f"/api/v1/queue/{errors[0]}")[1]["error"]["message"]
    assert message
    assert d.json("POST", "/api/v1/sync/inbound/pause")[0] == 200
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    login(page, d.base, d.token)
    expect(page).to_have_url(d.base + "/")
    notice = page.locator('.paused[data-direction="inbound"]')
    expect(notice).to_contain_text("Inbound sync is paused")
    expect(page.locator('.paused[data-direction="outbound"]')).to_have_count(0)
    page.goto(d.base + "/?status=error&direction=inbound")
    cell = page.locator(f'table.queue tr[data-id="{errors[0]}"] td[data-label="Error"]')
    expect(cell).to_contain_text("validation")
    expect(cell).to_contain_text(message[:60])
    page.screenshot(path=str(ARTIFACTS / "overview-paused.png"), full_page=True)

    code, out, _ = run_cli(d, "status")
    assert code == 0 and "direction inbound: PAUSED" in out and "direction outbound:" in out
    code, out, err = run_cli(d, "health")
    assert code == 0 and "direction inbound: PAUSED" in out and "INBOUND SYNC PAUSED" in err
    code, out, _ = run_cli(d, "queue", "list", "--status", "error", "--direction", "inbound")
    assert code == 0 and f"validation: {message[:20]}" in out

    # Resumed: the notice goes.
    assert d.json("POST", "/api/v1/sync/inbound/resume")[0] == 200
    page.goto(d.base + "/")
    expect(page.locator(".paused")).to_have_count(0)

    # Sign out, then replay the old cookie from a fresh browser: it is dead.
    (cookie,) = [c for c in ctx.cookies() if c["name"] == "syncd_session"]
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(d.base + "/login")
    thief = browser.new_context()
    thief.add_cookies([cookie])  # type: ignore[list-item]
    tpage = thief.new_page()
    tpage.goto(d.base + "/")
    expect(tpage).to_have_url(d.base + "/login")
    thief.close()
    ctx.close()

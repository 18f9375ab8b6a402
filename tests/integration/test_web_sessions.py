"""Page sessions: a logout ends the session on every instance sharing the store, the cookie
is Secure when the request came over TLS (directly or from a trusted proxy), and failed
sign-ins are throttled per client address and for the account (429 with Retry-After)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from syncd.store.mysql import MysqlStore
from tests.integration.overview_support import LiveApp
from tests.integration.test_overview_page import call, login


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveApp]:
    app = LiveApp(tmp_path, engine=True)
    try:
        yield app
    finally:
        app.close()


def logout(live: LiveApp, cookie: str, csrf: str) -> None:
    status, _, headers = call(
        live, "POST", "/logout", form={"csrf": csrf}, headers={"Cookie": cookie}
    )
    assert status == 303 and headers["Location"] == "/login"
    assert "syncd_session=" in headers.get("Set-Cookie", "")  # cleared in this browser


def signed_in(live: LiveApp, cookie: str) -> bool:
    status = call(live, "GET", "/", headers={"Cookie": cookie})[0]
    assert status in (200, 303), status
    return status == 200


def test_logout_ends_the_session_for_a_copied_cookie_too(live: LiveApp) -> None:
    cookie, csrf = login(live)
    other_cookie, _ = login(live)
    assert signed_in(live, cookie)
    logout(live, cookie, csrf)
    # The cookie as it was (kept by an attacker, another tab, a proxy log) no longer works.
    assert not signed_in(live, cookie)
    status, _, headers = call(
        live, "POST", "/queue/retry", form={"csrf": csrf}, headers={"Cookie": cookie}
    )
    assert status == 303 and headers["Location"] == "/login"
    # Another session of the same admin is not signed out by it.
    assert signed_in(live, other_cookie)


def test_logout_on_one_instance_holds_on_every_instance_sharing_mariadb(
    tmp_path: Path, mysql_database: str
) -> None:
    a = LiveApp(tmp_path / "a", engine=True, store=lambda: MysqlStore(mysql_database))
    b = LiveApp(tmp_path / "b", engine=True, store=lambda: MysqlStore(mysql_database))
    try:
        cookie, csrf = login(a)
        assert signed_in(b, cookie)  # one store, one session: valid on both
        logout(a, cookie, csrf)
        assert not signed_in(b, cookie)
        assert not signed_in(a, cookie)
        cookie2, csrf2 = login(b)
        assert signed_in(a, cookie2)
        logout(b, cookie2, csrf2)
        assert not signed_in(a, cookie2)
    finally:
        a.close()
        b.close()


def secure_flag(live: LiveApp, headers: dict[str, str]) -> bool:
    status, _, got = call(live, "POST", "/login", form={"token": live.token}, headers=headers)
    assert status == 303, status
    return bool(re.search(r";\s*Secure\b", got["Set-Cookie"], re.IGNORECASE))


def test_cookie_is_secure_when_the_request_came_over_tls_through_a_trusted_proxy(
    tmp_path: Path, live: LiveApp
) -> None:
    https = {"X-Forwarded-Proto": "https"}
    assert not secure_flag(live, {})
    # Not from a trusted proxy: anyone can send the header, so it means nothing.
    assert not secure_flag(live, https)
    proxied = LiveApp(tmp_path / "p", engine=True, daemon={"trusted_proxies": ["127.0.0.0/8"]})
    try:
        assert secure_flag(proxied, https)
        assert secure_flag(proxied, {"X-Forwarded-Proto": "http, https"})  # the last hop's
        assert not secure_flag(proxied, {"X-Forwarded-Proto": "http"})
        assert not secure_flag(proxied, {})
    finally:
        proxied.close()


def wrong(
    live: LiveApp, client: str | None = None, token: str = "wrong"
) -> tuple[int, str, dict[str, str]]:
    headers = {"X-Forwarded-For": client} if client else {}
    return call(live, "POST", "/login", form={"token": token}, headers=headers)


def test_failed_logins_are_throttled_per_address_and_for_the_account(tmp_path: Path) -> None:
    live = LiveApp(
        tmp_path,
        engine=True,
        daemon={
            "trusted_proxies": ["127.0.0.1"],
            "login_failures_per_address": 3,
            "login_failures_total": 5,
            "login_window": 600,
        },
    )

    def count(outcome: str) -> float:
        return REGISTRY.get_sample_value("syncd_page_logins_total", {"outcome": outcome}) or 0.0

    before = {o: count(o) for o in ("ok", "wrong", "throttled")}
    try:
        for _ in range(3):
            assert wrong(live, "203.0.113.7")[0] == 401
        status, html, headers = wrong(live, "203.0.113.7")
        assert status == 429 and "Too many failed sign-ins" in html
        assert 1 <= int(headers["Retry-After"]) <= 600
        # Throttled means throttled: the right token from there is refused too, for now.
        assert wrong(live, "203.0.113.7", token=live.token)[0] == 429
        # Another address may still try, until the account as a whole had enough.
        assert wrong(live, "198.51.100.2", token=live.token)[0] == 303
        assert wrong(live, "198.51.100.2")[0] == 401
        assert wrong(live, "198.51.100.3")[0] == 401
        status, _, headers = wrong(live, "198.51.100.4")
        assert status == 429 and int(headers["Retry-After"]) >= 1
        assert wrong(live, "198.51.100.4", token=live.token)[0] == 429
        grown = {o: count(o) - n for o, n in before.items()}
        assert grown == {"ok": 1, "wrong": 5, "throttled": 4}, grown
    finally:
        live.close()


def test_without_a_trusted_proxy_forwarded_addresses_do_not_dodge_the_throttle(
    live: LiveApp,
) -> None:
    for i in range(5):
        assert wrong(live, f"192.0.2.{i}")[0] == 401
    status, _, headers = wrong(live, "192.0.2.99")
    assert status == 429 and "Retry-After" in headers


def test_behind_trusted_proxies_the_client_cannot_invent_its_address(tmp_path: Path) -> None:
    """X-Forwarded-For is read from the right: the first address a trusted proxy did not
    add is the client; what the client wrote to the left of it changes nothing."""
    live = LiveApp(
        tmp_path,
        engine=True,
        daemon={"trusted_proxies": ["127.0.0.1", "10.0.0.0/8"], "login_failures_per_address": 2},
    )
    try:
        for fake in ("1.1.1.1", "2.2.2.2"):
            assert wrong(live, f"{fake}, 203.0.113.9, 10.0.0.5")[0] == 401
        assert wrong(live, "3.3.3.3, 203.0.113.9, 10.0.0.5")[0] == 429
        assert wrong(live, "203.0.113.10, 10.0.0.5", token=live.token)[0] == 303
    finally:
        live.close()

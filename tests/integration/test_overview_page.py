"""The overview page over HTTP: auth by bearer or session cookie, CSRF and origin checks,
security headers, and the content it renders."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.model import Direction, ErrorCategory
from syncd.web.sessions import new_session_cookie
from tests.integration.overview_support import LiveApp, Seeded, seed


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kw: object) -> None:
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def call(
    live: LiveApp,
    method: str,
    path: str,
    *,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, dict[str, str]]:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request(live.base + path, data=data, method=method)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with OPENER.open(req, timeout=30) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveApp]:
    app = LiveApp(tmp_path, engine=True)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def seeded(live: LiveApp) -> Seeded:
    return live.run(seed(live.store))


def login(live: LiveApp) -> tuple[str, str]:
    """Sign in through the form; (cookie header, csrf token from the page)."""
    status, _, headers = call(live, "POST", "/login", form={"token": live.token})
    assert status == 303 and headers["Location"] == "/"
    set_cookie = headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    cookie = set_cookie.split(";", 1)[0]
    status, html, _ = call(live, "GET", "/", headers={"Cookie": cookie})
    assert status == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', html)
    assert csrf
    return cookie, csrf.group(1)


def test_unauthenticated_goes_to_login(live: LiveApp, seeded: Seeded) -> None:
    for path in ("/", f"/entry/{seeded.error[0]}"):
        status, _, headers = call(live, "GET", path)
        assert status == 303 and headers["Location"] == "/login"
    status, html, headers = call(live, "GET", "/login")
    assert status == 200 and '<label for="token">' in html
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    status, html, _ = call(live, "POST", "/login", form={"token": "wrong"})
    assert status == 401 and "Wrong token" in html
    status, _, headers = call(live, "POST", f"/entry/{seeded.pending[0]}/delete", form={})
    assert status == 303 and headers["Location"] == "/login"
    assert live.json("GET", f"/api/v1/queue/{seeded.pending[0]}")[0] == 200


def test_bearer_header_works_without_csrf(live: LiveApp, seeded: Seeded) -> None:
    auth = {"Authorization": f"Bearer {live.token}"}
    status, html, _ = call(live, "GET", "/?status=error", headers=auth)
    assert status == 200 and html.count('<tr data-id="') == len(seeded.error)
    status, _, headers = call(
        live, "POST", f"/entry/{seeded.pending[0]}/delete", form={}, headers=auth
    )
    assert status == 303 and "deleted" in urllib.parse.unquote_plus(headers["Location"])
    status, _, _ = call(live, "GET", "/", headers={"Authorization": "Bearer nope"})
    assert status == 303


def test_cookie_session_needs_csrf_and_same_origin(live: LiveApp, seeded: Seeded) -> None:
    cookie, csrf = login(live)
    victim = seeded.pending[0]
    path = f"/entry/{victim}/delete"
    status, html, _ = call(live, "POST", path, form={}, headers={"Cookie": cookie})
    assert status == 403 and "Request refused" in html
    status, _, _ = call(live, "POST", path, form={"csrf": "x" * 40}, headers={"Cookie": cookie})
    assert status == 403
    evil = {"Cookie": cookie, "Origin": "http://evil.example"}
    status, _, _ = call(live, "POST", path, form={"csrf": csrf}, headers=evil)
    assert status == 403
    assert live.json("GET", f"/api/v1/queue/{victim}")[0] == 200
    good = {"Cookie": cookie, "Origin": live.base}
    status, _, headers = call(live, "POST", path, form={"csrf": csrf, "back": "/"}, headers=good)
    assert status == 303 and headers["Location"].startswith("/?msg=Entry")
    assert live.json("GET", f"/api/v1/queue/{victim}")[0] == 404


def test_redirects_stay_on_site_and_refusals_explain(live: LiveApp, seeded: Seeded) -> None:
    cookie, csrf = login(live)
    h = {"Cookie": cookie}
    form = {"csrf": csrf, "back": "//evil.example/x"}
    status, _, headers = call(
        live, "POST", f"/entry/{seeded.pending[1]}/delete", form=form, headers=h
    )
    assert status == 303 and headers["Location"].startswith("/?")
    status, _, headers = call(
        live, "POST", f"/entry/{seeded.processed[0]}/delete", form={"csrf": csrf}, headers=h
    )
    location = urllib.parse.unquote_plus(headers["Location"])
    assert "target system" in location and "bad=1" in location
    status, html, _ = call(live, "GET", headers["Location"], headers=h)
    assert 'class="flash bad"' in html and "target system" in html


def test_tampered_or_expired_sessions_are_refused(live: LiveApp) -> None:
    cookie, _ = login(live)
    name, value = cookie.split("=", 1)
    issued, nonce, sig = value.split(".")
    for bad in (f"{issued}.{nonce}.{'0' * len(sig)}", f"{int(issued) + 5}.{nonce}.{sig}", "x"):
        status, _, _ = call(live, "GET", "/", headers={"Cookie": f"{name}={bad}"})
        assert status == 303
    old = new_session_cookie(live.token, now=0)
    assert call(live, "GET", "/", headers={"Cookie": f"{name}={old}"})[0] == 303


def test_page_shows_banner_health_queue_and_detail(live: LiveApp, seeded: Seeded) -> None:
    live.run(
        live.store.set_integration_error(
            Direction.INBOUND, ErrorCategory.MAPPING, "No such column 'Foo__c'"
        )
    )
    auth = {"Authorization": f"Bearer {live.token}"}
    status, html, _ = call(live, "GET", "/", headers=auth)
    assert 'role="alert"' in html and "inbound: mapping" in html and "Foo__c" in html
    assert "Per object" in html and "untagged: 10" in html
    assert html.count('<tr data-id="') == 50
    status, html, _ = call(live, "GET", f"/entry/{seeded.processed[0]}", headers=auth)
    assert "Written to contact" in html and "Phone" in html and "conflict" in html
    status, html, _ = call(live, "GET", f"/entry/{seeded.error[0]}", headers=auth)
    assert "REQUIRED_FIELD_MISSING" in html and "Retry now" in html
    assert call(live, "GET", "/entry/999999", headers=auth)[0] == 404
    status, html, _ = call(live, "GET", "/?status=bogus", headers=auth)
    assert status == 400 and "Filter not applied" in html
    status, html, _ = call(live, "GET", "/?q=<script>alert(1)</script>", headers=auth)
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html

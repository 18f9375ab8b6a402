"""Salesforce OAuth for the shared HttpClient: client credentials, refresh token, JWT bearer.

The token response carries the ``instance_url`` every API call goes to. Salesforce sends no
``expires_in``; a session dies after inactivity, which shows up as a 401 and one refresh.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import jwt

from syncd.config import CrmSettings
from syncd.errors import AuthError, TransientError

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class SalesforceAuth:
    """An `Authenticator` that obtains and renews Salesforce access tokens."""

    def __init__(self, settings: CrmSettings) -> None:
        self._settings = settings
        self._token: str | None = None
        self.instance_url: str | None = None
        self._lock = asyncio.Lock()
        self._fetched_at = 0.0
        self.token_requests = 0

    async def headers(self, session: aiohttp.ClientSession) -> dict[str, str]:
        """The Bearer header; fetches a token first when there is none."""
        if self._token is None:
            await self.refresh(session)
        return {"Authorization": f"Bearer {self._token}"}

    async def refresh(self, session: aiohttp.ClientSession) -> bool:
        """Get a new token (once, however many callers saw the same 401 at the same time)."""
        waited_since = time.monotonic()
        async with self._lock:
            if self._token is not None and self._fetched_at > waited_since:
                return True  # another caller renewed it while we waited
            self._token = None
            data = await self._request_token(session)
            token, instance = data.get("access_token"), data.get("instance_url")
            if not isinstance(token, str) or not isinstance(instance, str):
                raise AuthError("salesforce: token response lacks access_token/instance_url")
            self._token = token
            self.instance_url = instance.rstrip("/")
            self._fetched_at = time.monotonic()
            return True

    def _form(self) -> dict[str, str]:
        s = self._settings
        if s.auth_flow == "jwt_bearer":
            assert s.private_key is not None and s.username is not None
            claims = {
                "iss": s.client_id,
                "sub": s.username,
                "aud": s.login_url,
                "exp": int(time.time()) + 180,
            }
            try:
                assertion = jwt.encode(claims, s.private_key.get_secret_value(), algorithm="RS256")
            except (ValueError, TypeError, jwt.PyJWTError):
                # The library's message may quote key material; never pass it on.
                raise AuthError(
                    "salesforce: crm.private_key is not a usable RSA private key (PEM)"
                ) from None
            return {"grant_type": JWT_GRANT, "assertion": assertion}
        assert s.client_secret is not None
        form = {
            "grant_type": s.auth_flow,
            "client_id": s.client_id,
            "client_secret": s.client_secret.get_secret_value(),
        }
        if s.auth_flow == "refresh_token":
            assert s.refresh_token is not None
            form["refresh_token"] = s.refresh_token.get_secret_value()
        return form

    async def _request_token(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        url = f"{self._settings.login_url}/services/oauth2/token"
        self.token_requests += 1
        timeout = aiohttp.ClientTimeout(
            total=self._settings.http.connect_timeout + self._settings.http.read_timeout
        )
        try:
            async with session.post(url, data=self._form(), timeout=timeout) as r:
                status, body = r.status, await r.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(
                f"salesforce: token endpoint unreachable ({type(exc).__name__})"
            ) from None
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = {}
        if status == 200 and isinstance(data, dict):
            return data
        if status >= 500 or status == 429:
            raise TransientError(f"salesforce: token endpoint answered HTTP {status}")
        error = str(data.get("error", "")) if isinstance(data, dict) else ""
        desc = str(data.get("error_description", "")) if isinstance(data, dict) else ""
        raise AuthError(
            f"salesforce: {self._settings.auth_flow} authentication rejected: "
            f"{_redact(error or f'HTTP {status}', self._secrets())}"
            f"{': ' + _redact(desc[:200], self._secrets()) if desc else ''}; "
            "check the connected app and credentials (crm.*)"
        )

    def _secrets(self) -> list[str]:
        s = self._settings
        return [
            v.get_secret_value()
            for v in (s.client_secret, s.refresh_token, s.private_key)
            if v is not None and v.get_secret_value()
        ]


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text

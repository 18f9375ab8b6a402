"""The HTTP client every connector shares: timeouts, rate limiting, retries, re-auth, metrics.

Vendor specifics stay in the connectors; they hand in an `Authenticator` and a `classify`
function that turns a non-2xx response into the right typed error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from syncd import metrics
from syncd.errors import (
    AuthError,
    QuotaExhausted,
    RateLimited,
    RequestRejected,
    SyncdError,
    TransientError,
)
from syncd.model import QuotaState


@dataclass(frozen=True)
class HttpResponse:
    """A fully read response: status, headers and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str

    def json(self) -> Any:
        """The body decoded as JSON (None when empty)."""
        if not self.body:
            return None
        return json.loads(self.body)


class Authenticator(Protocol):
    """Supplies auth headers and can renew them once a 401 says they went stale."""

    async def headers(self, session: aiohttp.ClientSession) -> dict[str, str]:
        """Headers to send; authenticates first when there is no token yet."""

    async def refresh(self, session: aiohttp.ClientSession) -> bool:
        """Get a new token; False when this auth cannot be renewed. Raises AuthError if rejected."""


class StaticTokenAuth:
    """A fixed header (API keys, private-app tokens): nothing to renew."""

    def __init__(self, header: str, value_fn: Callable[[], str]) -> None:
        self._header = header
        self._value_fn = value_fn

    async def headers(self, session: aiohttp.ClientSession) -> dict[str, str]:
        """The configured header."""
        return {self._header: self._value_fn()}

    async def refresh(self, session: aiohttp.ClientSession) -> bool:
        """Static tokens cannot be renewed."""
        return False


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        return random.uniform(0, min(self.cap, self.base * (2**attempt)))


class RateLimiter:
    """Client-side sliding window: at most `calls` requests in any `period` seconds."""

    def __init__(self, calls: int, period: float) -> None:
        if calls < 1 or period <= 0:
            raise ValueError("rate limit needs calls >= 1 and period > 0")
        self.calls = calls
        self.period = period
        self._stamps: deque[float] = deque()
        self._held = 0  # `held` requests not ended yet: each keeps a slot, stamped at its end
        self._released = asyncio.Event()
        self._lock = asyncio.Lock()
        self._blocked_until = 0.0

    def block_for(self, seconds: float) -> None:
        """Hold every caller back for `seconds` (a server's Retry-After applies to all)."""
        self._blocked_until = max(self._blocked_until, time.monotonic() + seconds)

    async def acquire(self) -> None:
        """Wait until one more request fits in the window."""
        await self._take(hold=False)

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """One request counted from when it ended rather than began. A request still waits
        behind other limits (the request rate) after taking its slot here, and the server
        counts it from its arrival: counted from the start, the first request of a window
        could reach the server later than it was counted, and a request one window after
        it earlier than one window after its arrival (a 429). The slot is kept while the
        request runs, however long its retries take."""
        await self._take(hold=True)
        try:
            yield
        finally:
            self._held -= 1
            self._stamps.append(time.monotonic())  # now: later than every stamp, in order
            self._released.set()

    async def _take(self, *, hold: bool) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                if now < self._blocked_until:
                    await asyncio.sleep(self._blocked_until - now)
                    continue
                while self._stamps and now - self._stamps[0] >= self.period:
                    self._stamps.popleft()
                if len(self._stamps) + self._held < self.calls:
                    if hold:
                        self._held += 1
                    else:
                        self._stamps.append(now)
                    return
                if self._stamps:
                    await asyncio.sleep(self.period - (now - self._stamps[0]))
                else:  # every slot is a request still running: its end starts the count
                    self._released.clear()
                    await self._released.wait()


@dataclass
class QuotaGuard:
    """Tracks the vendor's daily quota and refuses writes inside the reserved share."""

    connector: str
    reserve: float = 0.10
    state: QuotaState | None = field(default=None)

    def update(self, used: int, limit: int) -> None:
        """Record the vendor's latest figures."""
        self.state = QuotaState(used=used, limit=limit)
        metrics.API_QUOTA_USED.labels(self.connector).set(used)
        metrics.API_QUOTA_LIMIT.labels(self.connector).set(limit)

    def check_write(self) -> None:
        """Raise QuotaExhausted when less than the reserve of the daily quota is left."""
        st = self.state
        if st is None or st.limit <= 0:
            return
        if st.remaining <= st.limit * self.reserve:
            raise QuotaExhausted(
                f"{self.connector}: {st.remaining} of {st.limit} daily API calls left, "
                f"below the {self.reserve:.0%} reserve; writes resume when the quota resets",
                used=st.used,
                limit=st.limit,
            )


Classifier = Callable[[HttpResponse], SyncdError | None]


def parse_retry_after(value: str | None, default: float) -> float:
    """Seconds from a Retry-After header (delta-seconds form); `default` when absent."""
    if not value:
        return default
    try:
        return max(float(value), 0.0)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return default


class HttpClient:
    """One aiohttp session per connector, with retries, rate limiting, re-auth and metrics."""

    def __init__(
        self,
        connector: str,
        *,
        auth: Authenticator,
        classify: Classifier,
        rate_limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        on_response: Callable[[HttpResponse], None] | None = None,
    ) -> None:
        self.connector = connector
        self.auth = auth
        self._classify = classify
        self.rate_limiter = rate_limiter
        self.retry = retry or RetryPolicy()
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout,
            sock_connect=connect_timeout,
            sock_read=read_timeout,
        )
        self._total_timeout = connect_timeout + read_timeout
        self._on_response = on_response
        self._session: aiohttp.ClientSession | None = None
        self.calls = 0

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open session (created on first use)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        """Close the session; safe to call twice."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        json_body: Any = None,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, str] | list[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        """Send one logical request, retrying transient failures; return a 2xx response.

        Raises the classifier's typed error for other statuses, RateLimited or TransientError
        when retries ran out, AuthError when a 401 survives one re-authentication.
        """
        reauthed = False
        attempt = 0
        while True:
            if self.rate_limiter is not None:
                await self.rate_limiter.acquire()
            try:
                resp = await self._send(method, url, json_body, data, params, headers)
            except (aiohttp.ClientError, TimeoutError) as exc:
                metrics.API_REQUESTS.labels(self.connector, endpoint, "network_error").inc()
                err: SyncdError = TransientError(
                    f"{self.connector}: {endpoint}: {type(exc).__name__}"
                )
                wait = self.retry.delay(attempt)
                reason = "network"
            else:
                if 200 <= resp.status < 300:
                    metrics.API_REQUESTS.labels(self.connector, endpoint, "ok").inc()
                    return resp
                if resp.status == 401 and not reauthed:
                    metrics.API_REQUESTS.labels(self.connector, endpoint, "auth_error").inc()
                    reauthed = True
                    if await self.auth.refresh(self.session):
                        metrics.API_REAUTH.labels(self.connector).inc()
                        continue
                classified = self._classify(resp)
                err = classified or _unclassified(self.connector, endpoint, resp)
                outcome = _outcome(resp.status, err)
                metrics.API_REQUESTS.labels(self.connector, endpoint, outcome).inc()
                if isinstance(err, RateLimited):
                    if self.rate_limiter is not None:
                        self.rate_limiter.block_for(err.retry_after)
                    # Never earlier than the server asked; jitter only ever adds.
                    wait = err.retry_after + self.retry.delay(0) * 0.1
                    reason = "rate_limited"
                elif isinstance(err, TransientError):
                    wait = self.retry.delay(attempt)
                    reason = f"http_{resp.status}"
                else:
                    raise err
            attempt += 1
            if attempt >= self.retry.attempts:
                raise err
            metrics.API_RETRIES.labels(self.connector, reason).inc()
            await asyncio.sleep(wait)

    async def _send(
        self,
        method: str,
        url: str,
        json_body: Any,
        data: Mapping[str, str] | None,
        params: Mapping[str, str] | list[tuple[str, str]] | None,
        headers: Mapping[str, str] | None,
    ) -> HttpResponse:
        hdrs = dict(await self.auth.headers(self.session))
        if headers:
            hdrs.update(headers)
        body_data: Any = data
        if isinstance(json_body, bytes):
            # A JSON document the caller already encoded (it measured it): sent as is.
            hdrs["Content-Type"] = "application/json"
            json_body, body_data = None, json_body
        started = time.perf_counter()
        self.calls += 1
        try:
            async with asyncio.timeout(self._total_timeout):
                async with self.session.request(
                    method, url, json=json_body, data=body_data, params=params, headers=hdrs
                ) as r:
                    body = await r.read()
                    resp = HttpResponse(r.status, dict(r.headers), body, str(r.url))
        finally:
            metrics.API_DURATION.labels(self.connector).observe(time.perf_counter() - started)
        if self._on_response is not None:
            self._on_response(resp)
        return resp


def _unclassified(connector: str, endpoint: str, resp: HttpResponse) -> SyncdError:
    # 5xx and 408 are worth retrying; any other 4xx will fail the same way again.
    if resp.status >= 500 or resp.status == 408:
        return TransientError(f"{connector}: {endpoint}: HTTP {resp.status}")
    body = resp.body[:500].decode("utf-8", "replace")
    return RequestRejected(
        f"{connector}: {endpoint}: HTTP {resp.status}: {body}", status=resp.status, body=body
    )


def _outcome(status: int, err: SyncdError) -> str:
    if isinstance(err, RateLimited):
        return "rate_limited"
    if isinstance(err, AuthError):
        return "auth_error"
    if isinstance(err, QuotaExhausted):
        return "quota_exhausted"
    if status >= 500:
        return "server_error"
    return "client_error"

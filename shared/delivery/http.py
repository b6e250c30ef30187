"""One HTTP client for Graph, the Bot Connector and Workflows webhooks: bearer tokens, one refresh on 401, and the
mapping from platform answers to the app's error hierarchy (decided here once, not in each sender).

- 429 (and Retry-After on 503) → `Throttled(retry_after_seconds)`: reschedule, never sleep.
- 408, 412 (bot), 5xx, timeouts, connection resets → `TransientError`: back off and retry.
- 401 → refresh the token once and repeat the request; 401 again → `Unauthorized` (credentials: raised).
- 403 → `PermanentError` (forbidden for this target, e.g. the bot is not installed for the rep).
- 413 → `PayloadTooLarge`; 404 → `NotFound`; other 4xx → `InvalidInput` (permanent: dead-letter with the reason).
Error messages carry the status and the platform's error code, never the request or response body (personal data).
"""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import requests

from shared.delivery.tokens import TokenProvider
from shared.domain.errors import (
    InvalidInput,
    NotFound,
    OutcomeUnknown,
    PayloadTooLarge,
    PermanentError,
    Throttled,
    TransientError,
    Unauthorized,
)

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = (5.0, 30.0)  # connect, read (seconds)
DEFAULT_RETRY_AFTER = 30.0  # when a 429 carries no Retry-After
RETRYABLE_STATUS = {408, 412, 500, 502, 503, 504}


def retry_after_seconds(value: str | None, default: float = DEFAULT_RETRY_AFTER) -> float:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return default
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _error_code(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code", ""))[:80]
    return str(error or "")[:80]


class ApiClient:
    """Requests against one service. `name` appears in errors and logs ("graph", "bot", "webhook")."""

    def __init__(self, name: str, tokens: TokenProvider | None, session: requests.Session | None = None,
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT):
        self.name = name
        self.tokens = tokens
        self.session = session or requests.Session()
        self.timeout = timeout

    def request(self, method: str, url: str, *, json: Any = None, data: bytes | str | None = None,
                headers: Mapping[str, str] | None = None, params: Mapping[str, str] | None = None,
                ok: tuple[int, ...] = (200, 201, 202, 204)) -> requests.Response:
        refreshed = False
        while True:
            sent_headers = dict(headers or {})
            if self.tokens is not None:
                sent_headers["Authorization"] = f"Bearer {self.tokens.token(force_refresh=refreshed)}"
            try:
                response = self.session.request(method, url, json=json, data=data, headers=sent_headers,
                                                params=params, timeout=self.timeout)
            except requests.ConnectTimeout:  # never connected: nothing was carried out
                raise TransientError(f"{self.name}: {method} could not connect in time") from None
            except requests.Timeout:
                raise OutcomeUnknown(f"{self.name}: {method} timed out") from None
            except requests.ConnectionError:
                raise OutcomeUnknown(f"{self.name}: {method} connection failed or was reset") from None
            if response.status_code in ok:
                return response
            if response.status_code == 401 and self.tokens is not None and not refreshed:
                log.info("%s answered 401; refreshing the token once", self.name)
                refreshed = True
                continue
            raise self._error(method, response)

    def _error(self, method: str, response: requests.Response) -> Exception:
        status = response.status_code
        code = _error_code(response)
        what = f"{self.name}: {method} answered {status}{' ' + code if code else ''}"
        if status == 429 or (status == 503 and response.headers.get("Retry-After")):
            return Throttled(what, retry_after_seconds(response.headers.get("Retry-After")))
        if status == 504:  # a gateway gave up waiting: the service may still have done it
            return OutcomeUnknown(what)
        if status in RETRYABLE_STATUS or status >= 500:
            return TransientError(what)
        if status == 401:
            return Unauthorized(what)
        if status == 403:
            # Forbidden for this target (bot not installed for the rep, mailbox outside the app's RBAC scope):
            # permanent for this message, recorded with the reason.
            return PermanentError(what)
        if status == 413:
            return PayloadTooLarge(what)
        if status == 404:
            return NotFound(what)
        return InvalidInput(what)

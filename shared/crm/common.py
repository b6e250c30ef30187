"""What every CRM webhook shares: the request as the domain sees it, size and content-type checks, JSON decoding,
signature helpers, a replay guard and the broker message id of an event.

Nothing here does I/O: a webhook is verified and parsed in memory, then published once (shared/crm/ingest.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.domain.errors import InvalidInput, Location, PayloadTooLarge, Unauthorized
from shared.domain.events import CrmEvent
from shared.domain.messages import MAX_MESSAGE_ID

MAX_BODY_BYTES = 1024 * 1024  # far above any CRM's change notification; Dataverse itself strips images above 256 KB
SIGNATURE_WINDOW_SECONDS = 300  # HubSpot v3 and the generic endpoint: 5 minutes


@dataclass(frozen=True)
class WebhookRequest:
    """An HTTP request reduced to what verification and parsing need. Header names are lower-case."""

    method: str
    url: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, method: str, url: str, body: bytes, headers: Mapping[str, str] | None = None,
              params: Mapping[str, str] | None = None) -> WebhookRequest:
        return cls(method.upper(), url, body or b"", {k.lower(): v for k, v in (headers or {}).items()},
                   dict(params or {}))

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";", 1)[0].strip().lower()


def check_size(request: WebhookRequest, limit: int = MAX_BODY_BYTES) -> None:
    declared = request.header("content-length")
    if declared and declared.strip().isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {int(declared):,} bytes is over the {limit:,}-byte limit")
    if len(request.body) > limit:
        raise PayloadTooLarge(f"body of {len(request.body):,} bytes is over the {limit:,}-byte limit")
    if not request.body.strip():
        raise InvalidInput("empty body")


def require_content_type(request: WebhookRequest, *allowed: str) -> None:
    if request.content_type not in allowed:
        shown = request.content_type or "none"
        raise InvalidInput(f"content type {shown!r} is not accepted here; send {' or '.join(allowed)}",
                           Location(field="Content-Type"))


def decode_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise InvalidInput("body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InvalidInput("body is nested too deeply") from None


def hmac_sha256(key: str, message: bytes) -> bytes:
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).digest()


def same_secret(expected: bytes | str, given: bytes | str) -> bool:
    """Constant-time comparison (never `==` on secrets or signatures)."""
    if isinstance(expected, str):
        expected = expected.encode("utf-8")
    if isinstance(given, str):
        given = given.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(expected, given)


def check_timestamp(seconds: float, now: datetime, window: float = SIGNATURE_WINDOW_SECONDS) -> None:
    """Reject a signed timestamp outside now ± window (stale requests may be replays)."""
    skew = now.timestamp() - seconds
    if skew > window:
        raise Unauthorized(f"request timestamp is {int(skew)} s old; the limit is {int(window)} s")
    if skew < -window:
        raise Unauthorized("request timestamp is in the future")


class ReplayGuard:
    """Remembers signatures seen within the signature window, so an exact replay is refused in this process.

    Across processes the broker's duplicate detection (message id derived from signed content) absorbs replays;
    this guard lets the sender know. Bounded: the oldest entries go first.
    """

    def __init__(self, window_seconds: float = SIGNATURE_WINDOW_SECONDS, max_entries: int = 100_000):
        self.window = window_seconds
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def check_and_remember(self, signature: str, monotonic_now: float | None = None) -> None:
        now = time.monotonic() if monotonic_now is None else monotonic_now
        with self._lock:
            while self._seen:
                oldest, seen_at = next(iter(self._seen.items()))
                if now - seen_at <= self.window and len(self._seen) < self.max_entries:
                    break
                del self._seen[oldest]
            if signature in self._seen:
                raise Unauthorized("request was already received (replayed signature)")
            self._seen[signature] = now


def short_id(text: str) -> str:
    """A message-id-safe stand-in for a long id: stable, 64 hex characters."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def message_id_for(event: CrmEvent) -> str:
    """Broker message id: `<source>:<event id>` (≤ 128 chars; longer ids are hashed).

    The source prefix keeps ids of different CRMs apart on the one `crm-events` queue.
    """
    candidate = f"{event.source}:{event.event_id}"
    if len(candidate) <= MAX_MESSAGE_ID and candidate.isprintable():
        return candidate
    return f"{event.source}:{short_id(event.event_id)}"


def utc_from_millis(value: Any, where: str) -> datetime:
    try:
        millis = int(value)
        return datetime.fromtimestamp(millis / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise InvalidInput(f"must be epoch milliseconds, got {value!r}", Location(field=where)) from None


def require(mapping: Any, key: str, kinds: type | tuple[type, ...], where: str | None = None) -> Any:
    """mapping[key] of the given type(s), else InvalidInput naming the field."""
    if not isinstance(mapping, Mapping):
        raise InvalidInput("must be an object", Location(field=where or key))
    value = mapping.get(key)
    if value is None:
        raise InvalidInput("is required", Location(field=where or key))
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise InvalidInput(f"must be {_kind_names(kinds)}, got a boolean", Location(field=where or key))
    if not isinstance(value, kinds):
        raise InvalidInput(f"must be {_kind_names(kinds)}, got {type(value).__name__}", Location(field=where or key))
    return value


def _kind_names(kinds: type | tuple[type, ...]) -> str:
    names = {str: "text", int: "an integer", float: "a number", dict: "an object", list: "a list", bool: "a boolean"}
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(names.get(kind, kind.__name__) for kind in kinds)


def check_record_id(value: Any, where: str) -> str:
    """A CRM record id: printable, no path characters, ≤ 200 (it becomes a Table Storage RowKey)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInput("must be a record id", Location(field=where))
    text = str(value).strip()
    if not text or len(text) > 200 or any(ch in text for ch in "/\\#?") or not text.isprintable():
        raise InvalidInput("must be 1..200 printable characters without / \\ # ?", Location(field=where))
    return text

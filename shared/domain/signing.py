"""HMAC-signed, expiring tokens for links in mails (unsubscribe, approvals).

A token is `base64url(json payload) "." base64url(HMAC-SHA256(key, purpose "." payload))`. The payload carries no
personal data in clear: the customer id and an expiry. Tokens for one purpose never verify for another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from shared.domain.errors import ConfigError, InvalidInput, Unauthorized
from shared.settings import Settings

UNSUBSCRIBE = "unsubscribe"
APPROVAL = "approval"
DEFAULT_LIFETIME = timedelta(days=180)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(settings: Settings) -> bytes:
    if not settings.unsubscribe_signing_key:
        raise ConfigError("app setting UNSUBSCRIBE_SIGNING_KEY is required to sign links")
    return settings.unsubscribe_signing_key.encode("utf-8")


def sign(settings: Settings, purpose: str, subject: str, now: datetime | None = None,
         lifetime: timedelta = DEFAULT_LIFETIME) -> str:
    """A token binding `subject` (a customer or approval id) to `purpose` until now + lifetime."""
    expires = int(((now or datetime.now(UTC)) + lifetime).timestamp())
    payload = _b64(json.dumps({"s": subject, "x": expires}, separators=(",", ":")).encode("utf-8"))
    mac = hmac.new(_key(settings), f"{purpose}.{payload}".encode("ascii"), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def verify(settings: Settings, purpose: str, token: str, now: datetime | None = None) -> str:
    """The subject of a valid token; Unauthorized when forged, tampered or expired."""
    try:
        payload, mac = token.split(".", 1)
        expected = hmac.new(_key(settings), f"{purpose}.{payload}".encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(mac)):
            raise Unauthorized("link signature is not valid")
        data = json.loads(_unb64(payload))
    except (ValueError, UnicodeError):
        raise InvalidInput("link token is malformed") from None
    if int(data["x"]) < (now or datetime.now(UTC)).timestamp():
        raise Unauthorized("link has expired")
    return str(data["s"])


def unsubscribe_url(settings: Settings, customer_id: str, now: datetime | None = None) -> str:
    """The signed one-click unsubscribe link put into every customer mail."""
    return f"{settings.public_base_url}/api/unsubscribe?" + urlencode(
        {"token": sign(settings, UNSUBSCRIBE, customer_id, now)})

"""HMAC-signed, expiring tokens for links in mails and cards (unsubscribe, approvals, opportunity outcomes).

A token is `base64url(json payload) "." base64url(HMAC-SHA256(key, purpose "." payload))`. The payload carries no
personal data in clear: the customer id and an expiry. Tokens for one purpose never verify for another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from urllib.parse import quote, urlencode

from shared.domain.errors import ConfigError, InvalidInput, Unauthorized
from shared.settings import Settings

UNSUBSCRIBE = "unsubscribe"
APPROVAL = "approval"
OUTCOME = "outcome"  # a rep's answer to an opportunity card
DEFAULT_LIFETIME = timedelta(days=180)
OUTCOME_LIFETIME = timedelta(days=400)  # a deal can take most of a year to close


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_URLSAFE).decode("ascii")


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(settings: Settings) -> bytes:
    if not settings.unsubscribe_signing_key:
        raise ConfigError("app setting UNSUBSCRIBE_SIGNING_KEY is required to sign links")
    return settings.unsubscribe_signing_key.encode("utf-8")


@lru_cache(maxsize=8)
def _mac_of(key: bytes) -> hmac.HMAC:
    """A keyed HMAC to copy: every link of a sweep is signed with the same key (cards are signed per firing)."""
    return hmac.new(key, digestmod=hashlib.sha256)


def sign(settings: Settings, purpose: str, subject: str, now: datetime | None = None,
         lifetime: timedelta = DEFAULT_LIFETIME) -> str:
    """A token binding `subject` (a customer or approval id) to `purpose` until now + lifetime."""
    expires = int(((now or datetime.now(UTC)) + lifetime).timestamp())
    # The same bytes as json.dumps({"s": subject, "x": expires}, separators=(",", ":")), built without the encoder.
    payload = _b64(f'{{"s":{json.dumps(subject)},"x":{expires}}}'.encode("ascii"))
    mac = _mac_of(_key(settings)).copy()
    mac.update(f"{purpose}.{payload}".encode("ascii"))
    return f"{payload}.{_b64(mac.digest())}"


def verify(settings: Settings, purpose: str, token: str, now: datetime | None = None) -> str:
    """The subject of a valid token; Unauthorized when forged, tampered or expired."""
    if not isinstance(token, str):  # JSON bodies can carry anything: a list or number is no token
        raise InvalidInput("link token is malformed")
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


def outcome_url(settings: Settings, opportunity_id: str, now: datetime | None = None) -> str:
    """The signed link of an opportunity card's outcome buttons (`&decision=` preselects one on the page).

    Signed for every cross-sell and upsell card a sweep or dry-run renders, so it avoids the general URL encoders:
    a token is base64url (safe in a query as it is) and ids are quoted only when they hold unusual characters.
    """
    path = opportunity_id if _PLAIN_ID.fullmatch(opportunity_id) else quote(opportunity_id, safe="~:")
    token = sign(settings, OUTCOME, opportunity_id, now, OUTCOME_LIFETIME)
    return f"{settings.public_base_url}/api/opportunities/{path}/outcome?token={token}"


_PLAIN_ID = re.compile(r"[A-Za-z0-9~:._-]+")

"""The generic endpoint: a canonical customer (JSON) signed with HMAC-SHA256 (DESIGN.md, versioned here).

Headers: `X-Crmflow-Timestamp` (Unix seconds) and `X-Crmflow-Signature`, one of
- `v2=<hex>`: HMAC-SHA256(GENERIC_WEBHOOK_SECRET, "v2\n" + timestamp + "\n" + operation + "\n" + event id + "\n"
  + body), where operation and event id are the `X-Crmflow-Operation` and `X-Crmflow-Event-Id` header values as
  sent (stripped; empty when the header is absent). Everything that changes what the request means is signed.
- v1, `sha256=<hex>` or bare hex: HMAC over timestamp + "." + body (DESIGN's original form). Still accepted, but only
  for a request with neither `X-Crmflow-Operation` nor `X-Crmflow-Event-Id`: v1 does not cover them, so a
  captured request could otherwise be replayed as a delete.
Requests outside a 5-minute window are refused. Replays are absorbed across every instance by the broker: the event
id (`X-Crmflow-Event-Id`, else a hash of the signed content) is the message id, and Service Bus duplicate detection
(10 minutes, the whole window a signature is accepted in) drops a second copy; one process also answers 401 to an
exact replay it has seen. Only the fields present in the body are applied (a partial update); null clears a field.
`deals` merge by deal id (the deals sent, and only the fields sent for each).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime

from shared.crm.common import (
    ReplayGuard,
    WebhookRequest,
    check_timestamp,
    decode_json,
    hmac_sha256,
    require_content_type,
    same_secret,
)
from shared.domain.errors import ConfigError, InvalidInput, Location, Unauthorized
from shared.domain.events import CrmEvent
from shared.domain.model import CUSTOMER_FIELDS, Customer

SOURCE = "generic"
SIGNATURE_HEADER = "x-crmflow-signature"
TIMESTAMP_HEADER = "x-crmflow-timestamp"
EVENT_ID_HEADER = "x-crmflow-event-id"
OPERATION_HEADER = "x-crmflow-operation"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """A v1 X-Crmflow-Signature value (hex, over timestamp + "." + body): only for requests without the
    operation and event-id headers."""
    return hmac_sha256(secret, timestamp.encode("ascii") + b"." + body).hex()


def signed_content_v2(timestamp: str, operation: str, event_id: str, body: bytes) -> bytes:
    return b"\n".join((b"v2", timestamp.encode("ascii"), operation.encode("utf-8", "surrogatepass"),
                       event_id.encode("utf-8", "surrogatepass"), body))


def sign_v2(secret: str, timestamp: str, body: bytes, operation: str = "", event_id: str = "") -> str:
    """The X-Crmflow-Signature value `v2=<hex>` (what senders compute); operation and event id as sent in their
    headers, empty when not sent."""
    return "v2=" + hmac_sha256(secret, signed_content_v2(timestamp, operation, event_id, body)).hex()


def _meaning_headers(request: WebhookRequest) -> tuple[str, str]:
    return (request.header(OPERATION_HEADER) or "").strip(), (request.header(EVENT_ID_HEADER) or "").strip()


def verify(request: WebhookRequest, secret: str | None, now: datetime, replays: ReplayGuard | None = None) -> None:
    if not secret:
        raise ConfigError("app setting GENERIC_WEBHOOK_SECRET is required for /api/crm/generic")
    signature = (request.header(SIGNATURE_HEADER) or "").strip()
    timestamp = (request.header(TIMESTAMP_HEADER) or "").strip()
    if not signature or not timestamp:
        raise Unauthorized("X-Crmflow-Signature and X-Crmflow-Timestamp are required")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise Unauthorized("X-Crmflow-Timestamp must be Unix seconds")
    check_timestamp(int(timestamp), now)
    operation, event_id = _meaning_headers(request)
    if signature.lower().startswith("v2="):
        expected = sign_v2(secret, timestamp, request.body, operation, event_id)
    elif operation or event_id:
        raise Unauthorized("X-Crmflow-Operation and X-Crmflow-Event-Id must be signed: use a v2= signature")
    else:
        expected = sign(secret, timestamp, request.body)
        signature = signature.removeprefix("sha256=")
    if not same_secret(expected, signature.lower()):
        raise Unauthorized("X-Crmflow-Signature does not match")
    if replays is not None:
        replays.check_and_remember(f"generic:{signature.lower()}")


def parse_webhook(request: WebhookRequest, received_at: datetime) -> list[CrmEvent]:
    require_content_type(request, "application/json")
    body = decode_json(request.body)
    if not isinstance(body, Mapping):
        raise InvalidInput("the generic webhook takes one canonical customer JSON object")
    operation = (request.header(OPERATION_HEADER) or "update").strip().lower()
    if operation not in ("create", "update", "delete"):
        raise InvalidInput("must be create, update or delete", Location(field="X-Crmflow-Operation"))
    customer = Customer.from_dict(body)  # validates every field, naming the bad one
    full = customer.to_dict()
    record = {key: full[key] for key in body if key in CUSTOMER_FIELDS}
    if isinstance(body.get("deals"), list):  # per deal, only the fields sent: the rest of a stored deal stays
        record["deals"] = [{key: value for key, value in deal.items() if key in sent}
                           for deal, sent in zip(full["deals"], body["deals"], strict=True)]
    extra = {key: value for key, value in body.items() if key not in CUSTOMER_FIELDS}
    if extra or "custom" in body:
        record["custom"] = {**(full["custom"] if "custom" in body else {}), **extra}
    record["id"] = customer.id

    event_id = (request.header(EVENT_ID_HEADER) or "").strip()
    if event_id and (len(event_id) > 200 or not event_id.isprintable()):
        raise InvalidInput("must be at most 200 printable characters", Location(field="X-Crmflow-Event-Id"))
    if not event_id:  # a hash of the signed content: a replay of the request gets the same broker message id
        timestamp = (request.header(TIMESTAMP_HEADER) or "").strip()
        operation_sent = (request.header(OPERATION_HEADER) or "").strip()
        content = (signed_content_v2(timestamp, operation_sent, "", request.body) if operation_sent
                   else timestamp.encode() + b"." + request.body)
        event_id = hashlib.sha256(content).hexdigest()
    changed = tuple(key for key in record if key != "id")
    return [CrmEvent(
        source=SOURCE, entity="customer", record_id=customer.id, operation=operation, event_id=event_id,
        occurred_at=customer.updated_at, changed_fields=changed, record=record, received_at=received_at,
        extra={"crm_entity": "customer"},
    )]


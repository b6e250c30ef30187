"""The generic endpoint: a canonical customer (JSON) signed with HMAC-SHA256 (DESIGN.md).

Headers: `X-Crmflow-Timestamp` (Unix seconds), `X-Crmflow-Signature` = hex(HMAC-SHA256(GENERIC_WEBHOOK_SECRET,
timestamp + "." + body)), optionally prefixed `sha256=`; requests outside a 5-minute window are refused, as are
exact replays seen by this process. Optional: `X-Crmflow-Event-Id` (the sender's stable id, so a re-signed retry is
still deduplicated) and `X-Crmflow-Operation: delete`. Only the fields present in the body are applied
(a partial update); a field sent as null is cleared. `deals` merge by deal id (the deals sent, and only the
fields sent for each).
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
    """The X-Crmflow-Signature value for a body (what senders compute)."""
    return hmac_sha256(secret, timestamp.encode("ascii") + b"." + body).hex()


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
    signature = signature.removeprefix("sha256=")
    if not same_secret(sign(secret, timestamp, request.body), signature.lower()):
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
    if not event_id:
        timestamp = request.header(TIMESTAMP_HEADER) or ""
        event_id = hashlib.sha256(timestamp.encode() + b"." + request.body).hexdigest()
    changed = tuple(key for key in record if key != "id")
    return [CrmEvent(
        source=SOURCE, entity="customer", record_id=customer.id, operation=operation, event_id=event_id,
        occurred_at=customer.updated_at, changed_fields=changed, record=record, received_at=received_at,
        extra={"crm_entity": "customer"},
    )]


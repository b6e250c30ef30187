"""HubSpot webhooks: X-HubSpot-Signature-v3 verification and the event array → canonical events.

v3 signature (HubSpot's "Validating requests"): base64(HMAC-SHA256(client_secret, method + uri + body +
timestamp)), where `uri` is the full URL HubSpot called with a documented set of percent-escapes decoded and
`timestamp` is X-HubSpot-Request-Timestamp in epoch milliseconds; requests older than 5 minutes are refused.
A request carries up to 100 events; each names one object and, for property changes, one property.
A `*.merge` event (`primaryObjectId`, `mergedObjectIds`, `newObjectId`) deletes the contacts merged away: HubSpot
keeps only the surviving record (`newObjectId`, else `objectId`), whose own events carry the merged data.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from shared.crm.common import (
    ReplayGuard,
    WebhookRequest,
    check_record_id,
    check_timestamp,
    decode_json,
    hmac_sha256,
    require,
    require_content_type,
    same_secret,
    utc_from_millis,
)
from shared.crm.mapping import VendorMapping
from shared.domain.errors import ConfigError, InvalidInput, Location, Unauthorized
from shared.domain.events import CrmEvent

SOURCE = "hubspot"
MAX_EVENTS = 100
# HubSpot: "decode any URL-encoded characters listed in the following table in the requestUri".
_URI_DECODES = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'", "%28": "(",
                "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}
_ACTIONS = {"creation": "create", "propertychange": "update", "deletion": "delete", "privacydeletion": "delete",
            "restore": "create"}
_IGNORED_ACTIONS = {"associationchange"}  # nothing to apply to the customer record
MAX_MERGED = 100


def decode_uri(uri: str) -> str:
    for encoded, plain in _URI_DECODES.items():
        uri = uri.replace(encoded, plain).replace(encoded.lower(), plain)
    return uri


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp_ms: str) -> str:
    """The X-HubSpot-Signature-v3 value HubSpot would send (tests and the benchmark sign with it too)."""
    source = method.upper().encode() + decode_uri(uri).encode("utf-8") + body + timestamp_ms.encode()
    return base64.b64encode(hmac_sha256(secret, source)).decode("ascii")


def verify(request: WebhookRequest, secret: str | None, now: datetime, public_urls: Iterable[str] = (),
           replays: ReplayGuard | None = None) -> None:
    """Unauthorized unless the v3 signature matches and the timestamp is within 5 minutes.

    `public_urls` are other URLs HubSpot may have signed (the app's public base URL when a proxy rewrites the
    host); the request's own URL is always tried.
    """
    if not secret:
        raise ConfigError("app setting HUBSPOT_CLIENT_SECRET is required for /api/crm/hubspot")
    signature = request.header("x-hubspot-signature-v3")
    timestamp = request.header("x-hubspot-request-timestamp")
    if not signature or not timestamp:
        raise Unauthorized("X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp are required")
    if not timestamp.strip().isdigit() or len(timestamp.strip()) > 15:
        raise Unauthorized("X-HubSpot-Request-Timestamp must be epoch milliseconds")
    check_timestamp(int(timestamp) / 1000, now)
    for uri in (request.url, *public_urls):
        if same_secret(sign_v3(secret, request.method, uri, request.body, timestamp.strip()), signature.strip()):
            break
    else:
        raise Unauthorized("X-HubSpot-Signature-v3 does not match")
    if replays is not None:
        replays.check_and_remember(f"hubspot:{signature.strip()}")


def public_url_candidates(request: WebhookRequest, public_base_url: str) -> list[str]:
    """The request's path and query on the app's public base URL (what HubSpot called through a proxy)."""
    parts = urlsplit(request.url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    candidate = f"{public_base_url.rstrip('/')}{path}"
    return [candidate] if candidate != request.url else []


def parse_webhook(request: WebhookRequest, mapping: VendorMapping, received_at: datetime) -> list[CrmEvent]:
    require_content_type(request, "application/json")
    payload = decode_json(request.body)
    if isinstance(payload, Mapping):
        payload = [payload]
    if not isinstance(payload, list) or not payload:
        raise InvalidInput("a HubSpot webhook body is a non-empty JSON array of events")
    if len(payload) > MAX_EVENTS:
        raise InvalidInput(f"at most {MAX_EVENTS} events per request, got {len(payload)}")
    events = []
    for index, item in enumerate(payload):
        if isinstance(item, Mapping) and str(item.get("subscriptionType", "")).lower().endswith(".merge"):
            events += _merge_events(item, f"[{index}]", mapping, received_at)
            continue
        event = _event(item, f"[{index}]", mapping, received_at)
        if event is not None:
            events.append(event)
    return events


def _merge_events(item: Mapping, where: str, mapping: VendorMapping, received_at: datetime) -> list[CrmEvent]:
    """Deletes for the records a merge removed (customers only: a merged deal's data moves with its events)."""
    event_id = require(item, "eventId", int, f"{where}.eventId")
    subscription_id = require(item, "subscriptionId", int, f"{where}.subscriptionId")
    portal_id = require(item, "portalId", int, f"{where}.portalId")
    occurred_at = utc_from_millis(require(item, "occurredAt", int, f"{where}.occurredAt"), f"{where}.occurredAt")
    subscription = require(item, "subscriptionType", str, f"{where}.subscriptionType")
    object_name = subscription.partition(".")[0]
    if object_name == "object":
        object_name = require(item, "objectTypeId", str, f"{where}.objectTypeId")
    entity = mapping.entity(object_name, f"{where}.subscriptionType")
    if entity.kind != "customer":
        return []
    primary = check_record_id(require(item, "primaryObjectId", (int, str), f"{where}.primaryObjectId"),
                              f"{where}.primaryObjectId")
    merged = require(item, "mergedObjectIds", list, f"{where}.mergedObjectIds")
    if len(merged) > MAX_MERGED:
        raise InvalidInput(f"at most {MAX_MERGED} merged ids", Location(field=f"{where}.mergedObjectIds"))
    merged_ids = [check_record_id(value, f"{where}.mergedObjectIds[{i}]") for i, value in enumerate(merged)]
    survivor_raw = item.get("newObjectId") or item.get("objectId") or primary
    survivor = check_record_id(survivor_raw, f"{where}.newObjectId")
    gone = [record_id for record_id in dict.fromkeys([primary, *merged_ids]) if record_id != survivor]
    return [CrmEvent(
        source=SOURCE, entity="customer", record_id=record_id, operation="delete",
        event_id=f"{portal_id}-{subscription_id}-{event_id}-{record_id}", occurred_at=occurred_at,
        record={"id": mapping.customer_id(record_id)}, received_at=received_at,
        extra={"crm_entity": entity.name, "subscription_type": subscription, "portal_id": portal_id,
               "merged_into": mapping.customer_id(survivor)},
    ) for record_id in gone]


def _event(item: Any, where: str, mapping: VendorMapping, received_at: datetime) -> CrmEvent | None:
    if not isinstance(item, Mapping):
        raise InvalidInput("must be an event object", Location(field=where))
    event_id = require(item, "eventId", int, f"{where}.eventId")
    subscription_id = require(item, "subscriptionId", int, f"{where}.subscriptionId")
    portal_id = require(item, "portalId", int, f"{where}.portalId")
    occurred_at = utc_from_millis(require(item, "occurredAt", int, f"{where}.occurredAt"), f"{where}.occurredAt")
    subscription = require(item, "subscriptionType", str, f"{where}.subscriptionType")
    object_name, _, action = subscription.partition(".")
    action = action.lower()
    if action in _IGNORED_ACTIONS:
        return None
    operation = _ACTIONS.get(action)
    if operation is None:
        raise InvalidInput(f"subscription type {subscription[:60]!r} is not handled",
                           Location(field=f"{where}.subscriptionType"))
    if object_name == "object":  # generic subscriptions name the type by id (0-1 contact, 0-3 deal)
        object_name = require(item, "objectTypeId", str, f"{where}.objectTypeId")
    entity = mapping.entity(object_name, f"{where}.subscriptionType")
    record_id = check_record_id(require(item, "objectId", (int, str), f"{where}.objectId"), f"{where}.objectId")

    values: dict[str, Any] = {}
    if action == "propertychange":
        name = require(item, "propertyName", str, f"{where}.propertyName")
        value = item.get("propertyValue")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise InvalidInput("must be text", Location(field=f"{where}.propertyValue"))
        values[name] = value
    try:
        mapped = mapping.map(entity, values)
    except InvalidInput as exc:
        raise InvalidInput(exc.reason, Location(field=f"{where}.propertyValue ({exc.location.field})")) from None
    if action == "propertychange" and not mapped.changed:
        return None  # a property nobody mapped: nothing to update

    record = mapping.canonical_record(entity, record_id, mapped.record)
    return CrmEvent(
        source=SOURCE, entity=entity.kind, record_id=record_id, operation=operation,
        event_id=f"{portal_id}-{subscription_id}-{event_id}",  # eventId alone is not guaranteed unique
        occurred_at=occurred_at, changed_fields=mapped.changed, record=record, received_at=received_at,
        extra={"crm_entity": entity.name, "subscription_type": subscription, "portal_id": portal_id},
    )

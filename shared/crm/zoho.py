"""Zoho CRM: Notification API callbacks (and workflow webhooks posting the same JSON) → canonical events.

Zoho signs nothing; the watch registration's `token` (≤ 50 characters) comes back in every callback body and must
equal ZOHO_WEBHOOK_TOKEN (a workflow webhook may send it as the `X-Zoho-Webhook-Token` header instead). Callback:
`{"server_time", "module", "ids", "operation", "channel_id", "token", "affected_values": [{"record_id",
"values"}], ...}`; with `return_affected_field_values` the changed values arrive, lookups as `{name, id}`.
Zoho sends no event id, so one is derived from channel, server time, operation and record id.
`affected_fields` (`[{"<record id>": ["Email", ...]}]`) names the fields an update changed: they are the event's
changed fields, and an update that changed no mapped field is acknowledged without an event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.crm.common import (
    WebhookRequest,
    check_record_id,
    decode_json,
    require,
    require_content_type,
    same_secret,
    utc_from_millis,
)
from shared.crm.mapping import VendorMapping
from shared.domain.errors import ConfigError, InvalidInput, Location, Unauthorized
from shared.domain.events import CrmEvent

SOURCE = "zoho"
MAX_IDS = 100
TOKEN_HEADER = "x-zoho-webhook-token"  # noqa: S105 - a header name, not a secret
_OPERATIONS = {"insert": "create", "create": "create", "update": "update", "edit": "update", "delete": "delete"}


def parse_webhook(request: WebhookRequest, mapping: VendorMapping, token: str | None,
                  received_at: datetime) -> list[CrmEvent]:
    if not token:
        raise ConfigError("app setting ZOHO_WEBHOOK_TOKEN is required for /api/crm/zoho")
    require_content_type(request, "application/json")
    body = decode_json(request.body)
    if not isinstance(body, Mapping):
        raise InvalidInput("a Zoho notification is a JSON object")
    given = body.get("token") if body.get("token") is not None else request.header(TOKEN_HEADER)
    if not isinstance(given, str) or not same_secret(token, given):
        raise Unauthorized("Zoho token is missing or wrong")

    entity = mapping.entity(require(body, "module", str), "module")
    operation_name = require(body, "operation", str)
    operation = _OPERATIONS.get(operation_name.lower())
    if operation is None:
        raise InvalidInput(f"operation {operation_name[:30]!r} is not handled", Location(field="operation"))
    server_time = require(body, "server_time", int)
    occurred_at = utc_from_millis(server_time, "server_time")
    channel = body.get("channel_id", "")
    if isinstance(channel, bool) or not isinstance(channel, str | int):
        raise InvalidInput("must be a channel id", Location(field="channel_id"))
    ids = require(body, "ids", list)
    if not ids or len(ids) > MAX_IDS:
        raise InvalidInput(f"must list 1..{MAX_IDS} record ids", Location(field="ids"))
    values_by_id = _affected_values(body.get("affected_values"))
    fields_by_id = _affected_fields(body.get("affected_fields"))

    events = []
    for index, raw_id in enumerate(ids):
        record_id = check_record_id(raw_id, f"ids[{index}]")
        values = values_by_id.get(record_id, {})
        try:
            mapped = mapping.map(entity, values)
        except InvalidInput as exc:
            raise InvalidInput(exc.reason, Location(field=f"affected_values[{record_id}].{exc.location.field}")) \
                from None
        changed = mapped.changed
        affected = fields_by_id.get(record_id)
        if affected is not None and operation == "update":
            changed = tuple(dict.fromkeys(
                _changed_target(entity.fields[name].target) for name in affected if name in entity.fields))
            if not changed:
                continue  # only fields nobody mapped changed: nothing to update
        record = mapping.canonical_record(entity, record_id, mapped.record)
        events.append(CrmEvent(
            source=SOURCE, entity=entity.kind, record_id=record_id, operation=operation,
            event_id=f"{channel}-{server_time}-{operation}-{record_id}", occurred_at=mapped.updated_at or occurred_at,
            changed_fields=changed, record=record,
            # Without field values there is nothing to merge: the consumer re-reads the record when it can.
            needs_refetch=operation != "delete" and not values, received_at=received_at,
            extra={"crm_entity": entity.name, "channel_id": str(channel)},
        ))
    return events


def _changed_target(target: str) -> str:
    return "contact_name" if target.startswith("contact_name.") else target


def _affected_fields(value: Any) -> dict[str, tuple[str, ...]]:
    """`[{"<record id>": ["Field", ...]}, ...]` → record id → field API names."""
    if value is None:
        return {}
    if not isinstance(value, list):
        raise InvalidInput("must be a list of {record id: [fields]}", Location(field="affected_fields"))
    found: dict[str, tuple[str, ...]] = {}
    for index, item in enumerate(value):
        where = f"affected_fields[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidInput("must be {record id: [fields]}", Location(field=where))
        for raw_id, names in item.items():
            record_id = check_record_id(raw_id, where)
            if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
                raise InvalidInput("must list field API names", Location(field=f"{where}.{record_id}"))
            found[record_id] = (*found.get(record_id, ()), *names)
    return found


def _affected_values(value: Any) -> dict[str, Mapping[str, Any]]:
    if value is None:
        return {}
    if not isinstance(value, list):
        raise InvalidInput("must be a list of {record_id, values}", Location(field="affected_values"))
    found: dict[str, Mapping[str, Any]] = {}
    for index, item in enumerate(value):
        where = f"affected_values[{index}]"
        record_id = check_record_id(require(item, "record_id", (str, int), f"{where}.record_id"), where)
        values = require(item, "values", dict, f"{where}.values")
        found[record_id] = values
    return found

"""What travels on `crm-events`: one change reported by a CRM, already mapped onto canonical field names."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from shared.domain.errors import InvalidInput

SOURCES = ("dataverse", "hubspot", "salesforce", "zoho", "generic")
OPERATIONS = ("create", "update", "delete")


@dataclass(frozen=True)
class CrmEvent:
    """A canonical CRM change event.

    `entity` is canonical: "customer" (a contact or account) or "deal"; the CRM's own name (`contact`,
    `opportunity`, `Deals`, ...) is in `extra["crm_entity"]`. `record_id` is the CRM's id of the changed record.
    `record` holds canonical customer fields when the CRM sent them (a partial record for a partial update:
    only the keys present are applied; nested `usage`/`custom`/`owner` merge by key) and always
    `record["id"]`, the canonical customer id.
    For `entity == "deal"` it holds {"customer_id", "customer_email"?, "deal": {"id", ...}, "purchase":
    {"product", "amount", "date"}?}.

    How a deal names its customer: canonical customer ids of CRM records are `<id_prefix><CRM record id>`
    (`id_prefix` per CRM in mappings/<crm>.yaml: "" for Dataverse GUIDs in lower case, "hs-" HubSpot,
    "sf-" Salesforce, "zc-" Zoho), and the deal's reference to its contact/account (mapped to the `customer`
    target: Dataverse `customerid`, Salesforce `ContactId`, Zoho `Contact_Name`, HubSpot a deal property a
    workflow fills) goes through the same prefix, so `record["customer_id"]` equals the id the contact's own
    events carry. `shared.crm.merge.customer_id_of(event, refetched)` returns it (None: the CRM did not say).

    `needs_refetch` is set when the record must be re-read before merging: Dataverse stripped it
    (`x-ms-dynamics-msg-size-exceeded`), the owner is a user id the map cannot resolve to an email, or a deal
    update does not name its customer; Zoho notifications without field values.
    `event_id` is the source's own id (Dataverse OperationId, else RequestId, else CorrelationId+record+message;
    HubSpot `<portalId>-<subscriptionId>-<eventId>` since eventId alone is not unique; Salesforce notification
    Id; Zoho channel+server time+operation+record; generic X-Crmflow-Event-Id or a hash of the signed content).
    The broker message id is `<source>:<event_id>` (hashed past 128 chars: `shared.crm.common.message_id_for`).
    """

    source: str
    entity: str
    record_id: str
    operation: str
    event_id: str
    occurred_at: datetime | None = None
    changed_fields: tuple[str, ...] = ()
    record: Mapping[str, Any] | None = None
    needs_refetch: bool = False
    received_at: datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        for key in ("occurred_at", "received_at"):
            data[key] = data[key].isoformat() if data[key] else None
        data["changed_fields"] = list(self.changed_fields)
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, text: str | bytes) -> CrmEvent:
        try:
            data = json.loads(text)
            for key in ("occurred_at", "received_at"):
                if data.get(key):
                    data[key] = datetime.fromisoformat(data[key])
            data["changed_fields"] = tuple(data.get("changed_fields") or ())
            return cls(**data)
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"not a CRM event: {exc}") from None

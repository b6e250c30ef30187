"""What travels on `crm-events`: one change reported by a CRM, already mapped onto canonical field names."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from shared.errors import InvalidInput

SOURCES = ("dataverse", "hubspot", "salesforce", "zoho", "generic")
OPERATIONS = ("create", "update", "delete")


@dataclass(frozen=True)
class CrmEvent:
    """A canonical CRM change event.

    `record` holds canonical customer fields when the CRM sent them (a partial record for a partial update);
    for `entity == "deal"` it holds {"customer_id" | "customer_email", "deal": {...}, "purchase": {...} | None}.
    `needs_refetch` is set when the CRM stripped the record (Dataverse `x-ms-dynamics-msg-size-exceeded`).
    `event_id` is the source's own id (Dataverse OperationId, HubSpot eventId, Salesforce notification Id) and
    becomes the broker message id.
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

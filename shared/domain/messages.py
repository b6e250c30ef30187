"""What travels on the action queues (`teams`, `email`, `crm-tasks`).

Rendering happens when an action is planned, so a queued `ActionMessage` carries its final content and the senders
stay simple. `dedupe_key` is the broker message id (Service Bus duplicate detection) and the sender's idempotency key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from shared.domain.errors import InvalidInput, Location

MAX_MESSAGE_ID = 128  # Service Bus MessageId limit


@dataclass(frozen=True)
class ActionMessage:
    """One planned action, rendered and ready to deliver.

    `content` depends on the channel:
      email:    {"html": str, "text": str, "locale": str, "unsubscribe_url": str | None}
      teams:    {"card": {Adaptive Card 1.5}, "summary": str, "aad_object_id": str | None}
      crm_task: {"description": str, "due": "YYYY-MM-DD", "regarding_email": str | None, "owner_email": str | None}
    `to` is an email address for email/teams-owner/manager, `channel:<name>` for a Teams channel.
    """

    dedupe_key: str
    channel: str
    rule: str
    kind: str
    customer_id: str
    to: str
    subject: str | None
    content: Mapping[str, Any]
    planned_at: datetime
    not_before: datetime | None = None
    after: str | None = None  # dedupe key of the action that must be delivered first (`after: email`)
    importance: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)
    # Actions released only once this one was delivered (`after: email`), as ActionMessage JSON. The sender
    # publishes them after success, and again when a redelivery finds the send already completed: their own
    # dedupe keys (broker message ids) absorb the repeat.
    followups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.dedupe_key or len(self.dedupe_key) > MAX_MESSAGE_ID:
            raise InvalidInput(f"dedupe_key must be 1..{MAX_MESSAGE_ID} characters", Location(field="dedupe_key"))

    def to_json(self) -> str:
        # Shallow on purpose: asdict() deep-copies every rendered card and body, which the sweep pays per action.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["planned_at"] = self.planned_at.isoformat()
        data["not_before"] = self.not_before.isoformat() if self.not_before else None
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=_plain)

    @classmethod
    def from_json(cls, text: str | bytes) -> ActionMessage:
        try:
            data = json.loads(text)
            data["planned_at"] = datetime.fromisoformat(data["planned_at"])
            if data.get("not_before"):
                data["not_before"] = datetime.fromisoformat(data["not_before"])
            data["followups"] = tuple(data.get("followups") or ())
            return cls(**data)
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"not an action message: {exc}") from None


def _plain(value: object) -> object:
    """JSON for the read-only mappings and tuples a message may hold."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")

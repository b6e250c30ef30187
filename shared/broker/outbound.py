"""Action messages onto their queues: one way to build the broker message of an action, one way to publish many.

The planner (claimed firings), the delivery service (follow-ups, rescheduled copies) and the approval flow
(approval requests, approved messages) all publish action messages; they share these two functions so the
message id, schedule and subject mean the same everywhere: id = the action's dedupe key unless the caller needs a
new one (a rescheduled copy), visible from `not_before`, subject = the channel.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from shared.broker.port import Broker, OutgoingMessage, PropertyValue
from shared.domain.messages import ActionMessage
from shared.domain.names import CHANNEL_QUEUES


@dataclass(frozen=True)
class QueuedMessage:
    """A broker message waiting to be published, with the queue it goes to."""

    queue: str
    message: OutgoingMessage

    def to_dict(self) -> dict:
        m = self.message
        return {"queue": self.queue, "body": m.body, "message_id": m.message_id, "subject": m.subject,
                "scheduled_at": m.scheduled_at.isoformat() if m.scheduled_at else None,
                "properties": dict(m.properties)}

    @classmethod
    def from_dict(cls, data: dict) -> QueuedMessage:
        scheduled = datetime.fromisoformat(data["scheduled_at"]) if data.get("scheduled_at") else None
        return cls(data["queue"], OutgoingMessage(body=data["body"], message_id=data["message_id"],
                                                  scheduled_at=scheduled, subject=data.get("subject"),
                                                  properties=data.get("properties") or {}))


def queued(message: ActionMessage, *, message_id: str | None = None, scheduled_at: datetime | None = None,
           body: str | None = None, properties: Mapping[str, PropertyValue] | None = None) -> QueuedMessage:
    """The broker message of `message` on its channel's queue, visible from `scheduled_at` (default: the message's
    `not_before`). `body` passes an already serialised copy of `message` through."""
    return QueuedMessage(CHANNEL_QUEUES[message.channel], OutgoingMessage(
        body=body if body is not None else message.to_json(), message_id=message_id or message.dedupe_key,
        scheduled_at=scheduled_at or message.not_before, subject=message.channel, properties=dict(properties or {})))


def publish_by_queue(broker: Broker, messages: Iterable[QueuedMessage]) -> int:
    """Publish messages with one batched call per queue; returns how many were published."""
    by_queue: dict[str, list[OutgoingMessage]] = defaultdict(list)
    for item in messages:
        by_queue[item.queue].append(item.message)
    for queue, batch in by_queue.items():
        broker.publish(queue, batch)
    return sum(len(batch) for batch in by_queue.values())

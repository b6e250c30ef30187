"""Reading what the pipeline queued, for assertions."""

from __future__ import annotations

from shared.broker import Broker
from shared.domain.messages import ActionMessage


def drain(broker: Broker, queue: str) -> list[ActionMessage]:
    """Receive and complete everything visible on `queue`; the action messages, in order."""
    messages = []
    while batch := broker.receive(queue, max_messages=50):
        for message in batch:
            messages.append(ActionMessage.from_json(message.body))
            broker.complete(message)
    return messages

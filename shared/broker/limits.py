"""Client-side checks every adapter applies before publishing: what Service Bus (Standard tier) would reject."""

from __future__ import annotations

from shared.broker.port import OutgoingMessage
from shared.domain.errors import InvalidInput, Location, PayloadTooLarge
from shared.domain.messages import MAX_MESSAGE_ID

MAX_MESSAGE_BYTES = 256 * 1024  # Standard tier message size (body; headers and properties come on top)


def check_outgoing(message: OutgoingMessage) -> None:
    """InvalidInput for a bad id or a naive schedule; PayloadTooLarge for a body over the tier's limit."""
    if not message.message_id or len(message.message_id) > MAX_MESSAGE_ID:
        raise InvalidInput(f"message_id must be 1..{MAX_MESSAGE_ID} characters", Location(field="message_id"))
    if message.scheduled_at is not None and message.scheduled_at.tzinfo is None:
        raise InvalidInput("scheduled_at must be timezone-aware", Location(field="scheduled_at"))
    if len(message.body.encode("utf-8")) > MAX_MESSAGE_BYTES:
        raise PayloadTooLarge(f"message {message.message_id} is over {MAX_MESSAGE_BYTES // 1024} KB")

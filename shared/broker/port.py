"""The broker port: what the domain needs from a queue service.

Semantics every adapter honours (the contract tests in tests/integration/test_broker_contract.py prove them):
- `publish` is batched and atomic per call where the service allows; `message_id` ≤ 128 chars is the duplicate-
  detection key: a second message with the same id on the same queue within the duplicate window is dropped.
  A message that must be sent again on purpose (rescheduled after throttling) therefore needs a *new* message_id
  (e.g. `<dedupe_key>~r<n>`), while its body keeps the idempotency key.
- `scheduled_at` (aware datetime) delays visibility until then.
- `receive` takes peek-locks; a locked message is invisible to others until completed, abandoned, dead-lettered or
  its lock expires. Each receive increments `delivery_count`; past `max_delivery_count` the message goes to the
  dead-letter queue with reason `MaxDeliveryCountExceeded`. `renew_lock` extends a held lock (a long-running
  handler keeps its message); renewing a lock that was lost or settled raises Conflict.
In Azure the Functions Service Bus trigger does receive/complete/abandon itself; the app only publishes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

PropertyValue = str | int | float | bool


@dataclass(frozen=True)
class OutgoingMessage:
    body: str
    message_id: str
    scheduled_at: datetime | None = None
    subject: str | None = None
    properties: Mapping[str, PropertyValue] = field(default_factory=dict)


@dataclass(frozen=True)
class ReceivedMessage:
    queue: str
    body: str
    message_id: str
    delivery_count: int
    enqueued_at: datetime
    lock_token: str
    subject: str | None = None
    properties: Mapping[str, PropertyValue] = field(default_factory=dict)
    dead_letter_reason: str | None = None
    dead_letter_description: str | None = None


class Broker(ABC):
    """Publish always; receive/settle for the local host, the DLQ tools and the contract tests."""

    # Seconds a receive's lock lasts; adapters that know their queue's value say so. The local host renews at half.
    lock_duration: float = 20.0

    @abstractmethod
    def publish(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        """Send messages (batched). Raises TransientError when the service is unavailable."""

    @abstractmethod
    def receive(self, queue: str, max_messages: int = 1, max_wait_seconds: float = 0.0) -> list[ReceivedMessage]:
        """Peek-lock up to max_messages visible messages, waiting up to max_wait_seconds for the first."""

    @abstractmethod
    def complete(self, message: ReceivedMessage) -> None: ...

    @abstractmethod
    def abandon(self, message: ReceivedMessage) -> None:
        """Release the lock now so the message is redelivered (its delivery count stays incremented)."""

    @abstractmethod
    def renew_lock(self, message: ReceivedMessage) -> None:
        """Extend the message's lock by another lock duration; Conflict when this receiver no longer holds it."""

    @abstractmethod
    def dead_letter(self, message: ReceivedMessage, reason: str, description: str = "") -> None: ...

    @abstractmethod
    def peek_dead_letters(self, queue: str, max_messages: int = 100) -> list[ReceivedMessage]:
        """Dead-lettered messages of a queue, oldest first, without removing them."""

    @abstractmethod
    def replay_dead_letters(self, queue: str, message_ids: Sequence[str] | None = None) -> int:
        """Move dead-lettered messages (all, or those ids) back onto the queue; returns how many moved."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

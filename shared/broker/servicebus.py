"""Azure Service Bus adapter (azure-servicebus 7.x) for the broker port.

One `ServiceBusClient` per broker, and the container builds one broker per process. Senders and receivers are
opened once per queue and reused (AMQP links are expensive); they are not thread-safe, so each is guarded by a
lock. Settling a message needs the receiver that locked it, so received messages are remembered by lock token until
they are completed, abandoned or dead-lettered.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusMessageBatch,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusReceiver,
    ServiceBusSender,
    ServiceBusSubQueue,
)
from azure.servicebus import exceptions as sb

from shared.broker.limits import check_outgoing
from shared.broker.port import Broker, OutgoingMessage, PropertyValue, ReceivedMessage
from shared.broker.replay import REPLAYS_PROPERTY, replayed_message_id
from shared.domain.errors import (
    ConfigError,
    Conflict,
    CrmflowError,
    PayloadTooLarge,
    PermanentError,
    Throttled,
    TransientError,
    Unauthorized,
)
from shared.settings import Settings

MIN_WAIT_SECONDS = 0.5  # the SDK refuses a zero wait; a short one still answers "nothing now"
SERVER_BUSY_BACKOFF_SECONDS = 10.0  # what Service Bus asks clients to wait after ServerBusy


@contextlib.contextmanager
def mapped_errors(action: str) -> Iterator[None]:
    """Translate Service Bus SDK errors into the app's hierarchy (retryable or permanent)."""
    try:
        yield
    except CrmflowError:
        raise
    except (sb.MessageLockLostError, sb.MessageAlreadySettled) as exc:
        raise Conflict(f"{action}: lock lost or message already settled") from exc
    except sb.MessageSizeExceededError as exc:
        raise PayloadTooLarge(f"{action}: message over the size limit") from exc
    except sb.MessagingEntityNotFoundError as exc:
        raise ConfigError(f"{action}: queue not found in the namespace (deploy infra/)") from exc
    except (sb.ServiceBusAuthenticationError, sb.ServiceBusAuthorizationError) as exc:
        # The SDK calls these retryable (token refresh), but a missing role assignment never heals by retrying.
        raise Unauthorized(f"{action}: not authorised on the namespace ({type(exc).__name__})") from exc
    except sb.ServiceBusServerBusyError as exc:
        raise Throttled(f"{action}: Service Bus is busy", SERVER_BUSY_BACKOFF_SECONDS) from exc
    except sb.ServiceBusQuotaExceededError as exc:
        raise TransientError(f"{action}: queue quota exceeded") from exc
    except sb.ServiceBusError as exc:
        error = TransientError if getattr(exc, "_retryable", False) else PermanentError
        raise error(f"{action}: {type(exc).__name__}") from exc
    except (OSError, TimeoutError) as exc:
        raise TransientError(f"{action}: {type(exc).__name__}") from exc


class ServiceBusBroker(Broker):
    """The broker port on a Service Bus namespace (connection string, or managed identity with the namespace)."""

    def __init__(self, *, connection_string: str | None = None, namespace: str | None = None,
                 credential: Any = None):
        if connection_string:
            self._client = ServiceBusClient.from_connection_string(connection_string)
        elif namespace:
            if credential is None:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            self._client = ServiceBusClient(fully_qualified_namespace=namespace, credential=credential)
        else:
            raise ConfigError("ServiceBusBroker needs a connection string or a fully qualified namespace")
        self._connection_string = connection_string
        self._namespace = namespace
        self._credential = credential
        self._senders: dict[str, ServiceBusSender] = {}
        self._receivers: dict[tuple[str, bool], ServiceBusReceiver] = {}
        self._link_locks: dict[object, threading.Lock] = {}
        self._registry_lock = threading.Lock()
        self._locked: dict[str, tuple[ServiceBusReceiver, ServiceBusReceivedMessage]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> ServiceBusBroker:
        return cls(connection_string=settings.servicebus_connection, namespace=settings.servicebus_namespace)

    # --- links ----------------------------------------------------------------------------------------------
    def _link_lock(self, key: object) -> threading.Lock:
        with self._registry_lock:
            return self._link_locks.setdefault(key, threading.Lock())

    def _sender(self, queue: str) -> ServiceBusSender:
        with self._registry_lock:
            if queue not in self._senders:
                self._senders[queue] = self._client.get_queue_sender(queue)
            return self._senders[queue]

    def _receiver(self, queue: str, dead_letters: bool = False) -> ServiceBusReceiver:
        key = (queue, dead_letters)
        with self._registry_lock:
            if key not in self._receivers:
                self._receivers[key] = self._client.get_queue_receiver(
                    queue, receive_mode=ServiceBusReceiveMode.PEEK_LOCK, prefetch_count=0,
                    sub_queue=ServiceBusSubQueue.DEAD_LETTER if dead_letters else None)
            return self._receivers[key]

    def close(self) -> None:
        with self._registry_lock:
            links = [*self._senders.values(), *self._receivers.values()]
            self._senders.clear()
            self._receivers.clear()
            self._locked.clear()
        for link in links:
            with contextlib.suppress(Exception):
                link.close()
        with contextlib.suppress(Exception):
            self._client.close()
        if self._credential is not None and hasattr(self._credential, "close"):
            with contextlib.suppress(Exception):
                self._credential.close()

    # --- publish ----------------------------------------------------------------------------------------------
    def publish(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        for message in messages:
            check_outgoing(message)
        if not messages:
            return
        sender = self._sender(queue)
        with self._link_lock(("send", queue)), mapped_errors(f"publish to {queue}"):
            for batch in fill_batches((to_servicebus(m) for m in messages), sender.create_message_batch):
                sender.send_messages(batch)

    # --- receive and settle -------------------------------------------------------------------------------------
    def receive(self, queue: str, max_messages: int = 1, max_wait_seconds: float = 0.0) -> list[ReceivedMessage]:
        receiver = self._receiver(queue)
        with self._link_lock(("receive", queue)), mapped_errors(f"receive from {queue}"):
            got = receiver.receive_messages(max_message_count=max(1, max_messages),
                                            max_wait_time=max(MIN_WAIT_SECONDS, max_wait_seconds))
        received = []
        for message in got:
            mine = from_servicebus(queue, message)
            with self._registry_lock:
                self._locked[mine.lock_token] = (receiver, message)
            received.append(mine)
        return received

    def _settle(self, message: ReceivedMessage, action: str, settle: Callable[[ServiceBusReceiver,
                ServiceBusReceivedMessage], None]) -> None:
        with self._registry_lock:
            held = self._locked.pop(message.lock_token, None)
        if held is None:
            raise Conflict(f"{action} {message.message_id}: not locked by this broker (already settled?)")
        receiver, original = held
        with self._link_lock(("receive", message.queue)), mapped_errors(f"{action} {message.message_id}"):
            settle(receiver, original)

    def complete(self, message: ReceivedMessage) -> None:
        self._settle(message, "complete", lambda r, m: r.complete_message(m))

    def abandon(self, message: ReceivedMessage) -> None:
        self._settle(message, "abandon", lambda r, m: r.abandon_message(m))

    def dead_letter(self, message: ReceivedMessage, reason: str, description: str = "") -> None:
        self._settle(message, "dead-letter",
                     lambda r, m: r.dead_letter_message(m, reason=reason, error_description=description))

    def renew_lock(self, message: ReceivedMessage) -> None:
        """Extend the lock by the queue's lock duration."""
        with self._registry_lock:
            held = self._locked.get(message.lock_token)
        if held is None:
            raise Conflict(f"renew lock of {message.message_id}: not locked by this broker (already settled?)")
        receiver, original = held
        with self._link_lock(("receive", message.queue)), mapped_errors(f"renew lock of {message.message_id}"):
            receiver.renew_message_lock(original)

    # --- dead letters -------------------------------------------------------------------------------------------
    def peek_dead_letters(self, queue: str, max_messages: int = 100) -> list[ReceivedMessage]:
        receiver = self._receiver(queue, dead_letters=True)
        found: list[ReceivedMessage] = []
        next_sequence = 0
        with self._link_lock(("dlq", queue)), mapped_errors(f"peek dead letters of {queue}"):
            # A peek may answer with fewer than asked even when more exist: page by sequence number.
            while len(found) < max_messages:
                page = receiver.peek_messages(max_message_count=max_messages - len(found),
                                              sequence_number=next_sequence)
                if not page:
                    break
                found.extend(from_servicebus(queue, m) for m in page)
                next_sequence = page[-1].sequence_number + 1
        return found

    def replay_dead_letters(self, queue: str, message_ids: Sequence[str] | None = None) -> int:
        """Re-send dead letters to the queue under a new id (see `replayed_message_id`), then remove them."""
        wanted = None if message_ids is None else set(message_ids)
        receiver = self._receiver(queue, dead_letters=True)
        sender = self._sender(queue)
        skipped: list[ServiceBusReceivedMessage] = []
        moved = 0
        with self._link_lock(("dlq", queue)), self._link_lock(("send", queue)), \
                mapped_errors(f"replay dead letters of {queue}"):
            while batch := receiver.receive_messages(max_message_count=50, max_wait_time=2):
                for message in batch:
                    if wanted is not None and message.message_id not in wanted:
                        skipped.append(message)  # keep it locked until the end, so this loop never sees it again
                        continue
                    sender.send_messages(replay_copy(message))
                    receiver.complete_message(message)
                    moved += 1
            for message in skipped:
                receiver.abandon_message(message)
        return moved

    # --- administration (tests, `crmflow dlq`) ------------------------------------------------------------------
    def queue_properties(self, queue: str) -> dict[str, float]:
        """Lock duration, duplicate window and max delivery count as configured on the queue."""
        from azure.servicebus.management import ServiceBusAdministrationClient

        if self._connection_string:
            admin = ServiceBusAdministrationClient.from_connection_string(self._connection_string)
        else:
            admin = ServiceBusAdministrationClient(self._namespace, credential=self._credential)
        with admin, mapped_errors(f"read properties of {queue}"):
            props = admin.get_queue(queue)
        return {"lock_seconds": props.lock_duration.total_seconds(),
                "duplicate_window_seconds": props.duplicate_detection_history_time_window.total_seconds(),
                "max_delivery_count": props.max_delivery_count}

    def purge(self, queue: str) -> None:
        """Delete every visible message of a queue and its dead-letter queue (tests only)."""
        for sub_queue in (None, ServiceBusSubQueue.DEAD_LETTER):
            with self._client.get_queue_receiver(queue, sub_queue=sub_queue,
                                                 receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as drain, \
                    mapped_errors(f"purge {queue}"):
                while drain.receive_messages(max_message_count=100, max_wait_time=1):
                    pass


# --- conversions (pure functions; unit-tested without a namespace) -------------------------------------------------
def to_servicebus(message: OutgoingMessage) -> ServiceBusMessage:
    return ServiceBusMessage(
        message.body, message_id=message.message_id, subject=message.subject,
        application_properties=dict(message.properties) or None,
        scheduled_enqueue_time_utc=message.scheduled_at.astimezone(UTC) if message.scheduled_at else None)


def fill_batches(messages: Iterator[ServiceBusMessage] | Sequence[ServiceBusMessage],
                 new_batch: Callable[[], ServiceBusMessageBatch]) -> Iterator[ServiceBusMessageBatch]:
    """Pack messages into as few batches as fit; a new batch starts when the current one is full."""
    batch = new_batch()
    for message in messages:
        try:
            batch.add_message(message)
        except sb.MessageSizeExceededError:
            if len(batch) == 0:
                raise PayloadTooLarge(f"message {message.message_id} does not fit in an empty batch") from None
            yield batch
            batch = new_batch()
            batch.add_message(message)
    if len(batch):
        yield batch


def from_servicebus(queue: str, message: ServiceBusReceivedMessage) -> ReceivedMessage:
    enqueued = message.enqueued_time_utc or datetime.now(UTC)
    return ReceivedMessage(
        queue=queue, body=body_text(message), message_id=message.message_id or "",
        delivery_count=message.delivery_count or 0,
        enqueued_at=enqueued if enqueued.tzinfo else enqueued.replace(tzinfo=UTC),
        lock_token=str(message.lock_token or ""), subject=message.subject,
        properties=plain_properties(message.application_properties),
        dead_letter_reason=message.dead_letter_reason, dead_letter_description=message.dead_letter_error_description)


def body_text(message: ServiceBusMessage) -> str:
    body = message.body
    if isinstance(body, bytes | str):
        raw = body
    else:  # a data body arrives as an iterable of sections
        raw = b"".join(part if isinstance(part, bytes) else str(part).encode() for part in body)
    return raw.decode("utf-8") if isinstance(raw, bytes) else raw


def plain_properties(props: Mapping[Any, Any] | None) -> dict[str, PropertyValue]:
    """AMQP hands application property keys (and string values) back as bytes."""
    plain: dict[str, PropertyValue] = {}
    for key, value in (props or {}).items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        plain[name] = value.decode() if isinstance(value, bytes) else value
    return plain


def replay_copy(message: ServiceBusReceivedMessage) -> ServiceBusMessage:
    props = plain_properties(message.application_properties)
    props[REPLAYS_PROPERTY] = int(props.get(REPLAYS_PROPERTY, 0)) + 1
    return ServiceBusMessage(body_text(message), subject=message.subject, application_properties=props,
                             message_id=replayed_message_id(message.message_id or "", int(props[REPLAYS_PROPERTY])))

"""The Service Bus adapter's pure parts: message conversion, batch packing, error mapping (no namespace needed).

Its behaviour against a real namespace is the contract suite (tests/integration/test_broker_contract.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from azure.servicebus import ServiceBusMessageBatch
from azure.servicebus import exceptions as sb

from shared.broker.port import OutgoingMessage
from shared.broker.replay import original_message_id, replayed_message_id
from shared.broker.servicebus import (
    ServiceBusBroker,
    body_text,
    fill_batches,
    mapped_errors,
    plain_properties,
    to_servicebus,
)
from shared.domain.errors import (
    ConfigError,
    Conflict,
    PayloadTooLarge,
    PermanentError,
    Throttled,
    TransientError,
    Unauthorized,
)


def test_outgoing_message_maps_every_field():
    jst = timezone(timedelta(hours=9))
    out = to_servicebus(OutgoingMessage("本文", "key-1", scheduled_at=datetime(2026, 1, 5, 9, 0, tzinfo=jst),
                                        subject="renewal", properties={"rule": "r", "n": 2}))
    assert (out.message_id, out.subject, body_text(out)) == ("key-1", "renewal", "本文")
    assert out.scheduled_enqueue_time_utc == datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
    assert plain_properties(out.application_properties) == {"rule": "r", "n": 2}


def test_properties_from_amqp_bytes_become_strings():
    assert plain_properties({b"rule": b"cross-sell", b"n": 3, "ok": True}) == {"rule": "cross-sell", "n": 3, "ok": True}


def test_batches_split_when_full_and_keep_order():
    messages = [to_servicebus(OutgoingMessage("x" * 1000, f"m{i}")) for i in range(10)]
    batches = list(fill_batches(messages, lambda: ServiceBusMessageBatch(max_size_in_bytes=5000)))
    assert [len(b) for b in batches] == [4, 4, 2]


def test_a_message_larger_than_an_empty_batch_is_payload_too_large():
    big = [to_servicebus(OutgoingMessage("x" * 6000, "big"))]
    with pytest.raises(PayloadTooLarge):
        list(fill_batches(big, lambda: ServiceBusMessageBatch(max_size_in_bytes=5000)))


@pytest.mark.parametrize(("raised", "expected"), [
    (sb.ServiceBusConnectionError(message="reset"), TransientError),
    (sb.OperationTimeoutError(message="timeout"), TransientError),
    (sb.ServiceBusServerBusyError(message="busy"), Throttled),
    (sb.ServiceBusQuotaExceededError(message="full"), TransientError),
    (sb.MessageLockLostError(message="lost"), Conflict),
    (sb.MessageSizeExceededError(message="big"), PayloadTooLarge),
    (sb.MessagingEntityNotFoundError(message="no queue"), ConfigError),
    (sb.ServiceBusAuthorizationError(message="no role"), Unauthorized),
    (sb.MessageNotFoundError(message="gone"), PermanentError),
    (ConnectionResetError("reset"), TransientError),
])
def test_service_errors_map_to_retryable_or_permanent(raised, expected):
    with pytest.raises(expected) as caught, mapped_errors("publish"):
        raise raised
    assert caught.value.retryable == expected.retryable


def test_replay_ids_stay_within_the_limit_and_recognisable():
    assert replayed_message_id("key-1", 1) == "key-1~replay1"
    assert replayed_message_id("key-1~replay1", 2) == "key-1~replay2"
    long_id = "k" * 128
    replayed = replayed_message_id(long_id, 12)
    assert len(replayed) <= 128 and replayed.endswith("~replay12")
    assert original_message_id(replayed_message_id("key-1", 3)) == "key-1"


def test_needs_a_connection_string_or_namespace():
    with pytest.raises(ConfigError):
        ServiceBusBroker()


def test_connection_string_client_is_built_without_network():
    broker = ServiceBusBroker(connection_string="Endpoint=sb://127.0.0.1/;SharedAccessKeyName=k;SharedAccessKey=eA==")
    broker.close()

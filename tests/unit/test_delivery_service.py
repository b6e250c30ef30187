"""The delivery service on the in-memory storage backend (idempotency records, rate limits, suppressions, audit rows;
no Azurite), with an in-process transport that records what it was asked to send. The same service against Azurite
and HTTP stand-ins is tests/integration/test_delivery_live.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.broker.local import LocalBroker
from shared.delivery.idempotency import IN_PROGRESS, DedupeStore
from shared.delivery.ratelimit import RATE, Budget, RateLimiter
from shared.delivery.service import DeliveryService
from shared.delivery.suppressions import SuppressionStore
from shared.delivery.transports import SendResult, Transport
from shared.domain.errors import InvalidInput, Throttled, TransientError
from shared.domain.messages import ActionMessage
from shared.domain.names import DELIVERIES, EMAIL, TEAMS
from shared.domain.vocabulary import DeliveryStatus
from shared.storage.memory import MemoryStorage
from tests.delivery_support import ShiftClock, action


class RecordingTransport(Transport):
    """Accepts every message (or fails with the errors queued in `faults`), paced at `per_minute`."""

    name = "recording"

    def __init__(self, per_minute: int = 60_000):
        self.sent: list[ActionMessage] = []
        self.faults: list[Exception] = []
        self.per_minute = per_minute

    def budgets(self, message: ActionMessage) -> list[Budget]:
        return [Budget(RATE, "mailbox:crm-notify@contoso.example", self.per_minute, 60.0)]

    def send(self, message: ActionMessage, *, uncertain: bool = False) -> SendResult:
        if self.faults:
            raise self.faults.pop(0)
        self.sent.append(message)
        return SendResult(self.name, f"ref-{len(self.sent)}")


@pytest.fixture
def stack(tmp_path):
    storage, clock = MemoryStorage(), ShiftClock()
    transport = RecordingTransport()
    delivered: list[tuple[str, str]] = []
    broker = LocalBroker(tmp_path / "broker.sqlite3", clock=clock)
    service = DeliveryService(
        transports={"email": transport, "teams": transport}, broker=broker, clock=clock,
        dedupe=DedupeStore(storage.table(DELIVERIES), clock=lambda: _utc(clock())),
        limiter=RateLimiter(storage, clock=clock), suppressions=SuppressionStore(storage),
        audit=storage.table(DELIVERIES), on_delivered=lambda m, o: delivered.append((m.dedupe_key, o.status)),
        max_attempts=3)
    yield service, transport, storage, clock, broker, delivered
    broker.close()


def _utc(epoch: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC)


def audit_statuses(storage: MemoryStorage) -> list[str]:
    return [row["status"] for row in storage.snapshot()[DELIVERIES] if row["PartitionKey"].startswith("audit-")]


def test_a_message_is_sent_once_and_a_redelivery_is_a_duplicate(stack):
    service, transport, storage, _, broker, delivered = stack
    fyi = action("teams", key="renewal:C-001:90:fyi", to="hanako@contoso.example")
    assert service.deliver(action(followups=(fyi.to_json(),))).status == DeliveryStatus.SENT
    again = service.deliver(action(followups=(fyi.to_json(),)))
    assert again.status == DeliveryStatus.DUPLICATE and again.reference == "ref-1"
    assert len(transport.sent) == 1
    assert delivered == [("renewal:C-001:90", DeliveryStatus.SENT), ("renewal:C-001:90", DeliveryStatus.DUPLICATE)]
    assert broker.count(TEAMS) == 1  # the follow-up, published twice, dropped once by duplicate detection
    assert audit_statuses(storage) == [DeliveryStatus.SENT]
    assert not any("taro@example.co.jp" in str(row) for row in storage.snapshot()[DELIVERIES])


def test_an_opt_out_is_honoured_at_send_time(stack):
    service, transport, storage, *_ = stack
    SuppressionStore(storage).add_email("Taro@Example.co.jp", "one-click")
    assert service.deliver(action()).status == DeliveryStatus.OPTED_OUT
    assert transport.sent == [] and audit_statuses(storage) == [DeliveryStatus.OPTED_OUT]
    assert service.deliver(action()).status == DeliveryStatus.DUPLICATE  # the decision is recorded, not taken again


def test_another_workers_live_record_reschedules_the_copy(stack):
    service, transport, storage, *_ = stack
    other = DedupeStore(storage.table(DELIVERIES))
    assert other.claim("renewal:C-001:90").held
    outcome = service.deliver(action())
    assert outcome.status == DeliveryStatus.RESCHEDULED and transport.sent == []
    assert service.dedupe.claim("renewal:C-001:90").outcome == IN_PROGRESS


def test_pacing_spreads_a_burst_over_future_slots_and_admits_each_copy_at_its_slot(stack, tmp_path):
    service, transport, _, clock, broker, _ = stack
    transport.per_minute = 2
    outcomes = [service.deliver(action(key=f"campaign:C-{i}:2026")) for i in range(3)]
    assert [o.status for o in outcomes] == [DeliveryStatus.SENT, DeliveryStatus.RESCHEDULED, DeliveryStatus.RESCHEDULED]
    slots = [o.retry_at.timestamp() - clock() for o in outcomes[1:]]
    assert 29 < slots[0] < 32 and 60 < slots[1] < 63  # 60 s / (2 × headroom) apart
    for outcome in outcomes[1:]:  # each copy surfaces at its slot and uses it
        clock.advance(outcome.retry_at.timestamp() + 0.1 - clock())
        [message] = broker.receive(EMAIL, max_messages=10)
        assert service.deliver(ActionMessage.from_json(message.body)).status == DeliveryStatus.SENT
        broker.complete(message)
    assert len(transport.sent) == 3


def test_a_429_blocks_the_budget_for_every_sender_until_retry_after(stack):
    service, transport, _, clock, *_ = stack
    transport.faults.append(Throttled("429 from the service", retry_after_seconds=7))
    first = service.deliver(action())
    assert first.status == DeliveryStatus.RESCHEDULED and first.retry_at.timestamp() - clock() >= 6.9
    other = service.deliver(action(key="other"))
    assert other.status == DeliveryStatus.RESCHEDULED and other.retry_at.timestamp() - clock() >= 6.5


def test_transient_failures_back_off_then_fail_after_the_attempt_limit(stack):
    service, transport, storage, clock, *_ = stack
    transport.faults += [TransientError("503")] * 3
    for _ in range(2):
        assert service.deliver(action()).status == DeliveryStatus.RESCHEDULED
        clock.advance(timedelta(hours=1).total_seconds())
    final = service.deliver(action())
    assert final.status == "failed" and "after 3 failed attempts" in final.reason
    assert service.deliver(action()).status == "failed" and transport.sent == []
    transport.faults = [InvalidInput("bad address")]
    assert service.deliver(action(key="permanent")).status == "failed"
    assert audit_statuses(storage).count("failed") == 2

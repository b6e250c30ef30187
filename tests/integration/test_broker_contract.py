"""The broker contract (shared/broker/port.py), run against every adapter.

Always against the local SQLite broker; against a real Service Bus namespace too when SERVICEBUS_CONNECTION is set
(its queues from shared/domain/names.py must exist with duplicate detection on; they are drained before each test).
Expiry tests use the adapter's own lock duration and duplicate window and are skipped where those are too long.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.broker.local import LocalBroker
from shared.broker.port import Broker, OutgoingMessage, ReceivedMessage
from shared.broker.replay import REPLAYS_PROPERTY, original_message_id
from shared.domain import names
from shared.domain.errors import Conflict, InvalidInput, PayloadTooLarge

SERVICEBUS_CONNECTION = os.environ.get("SERVICEBUS_CONNECTION")
LONGEST_WAIT = 20.0  # seconds a test may wait for a lock or window to expire


@dataclass
class Subject:
    """An adapter under test and the settings it runs with."""

    kind: str
    broker: Broker
    make_broker: Callable[[], Broker]  # another instance: another connection, as another worker would have
    spec: tuple  # picklable recipe for a broker in a child process (see `_build`)
    lock_seconds: float
    duplicate_window_seconds: float
    max_delivery_count: int
    queue: str = names.TEAMS
    other_queue: str = names.EMAIL
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def mid(self, name: str) -> str:
        """A message id unique to this test run: a namespace remembers ids for its whole duplicate window."""
        return f"{self.run}-{name}"

    def publish(self, *messages: OutgoingMessage, queue: str | None = None) -> None:
        self.broker.publish(queue or self.queue, list(messages))

    def receive_all(self, broker: Broker | None = None, wait: float = 2.0, queue: str | None = None
                    ) -> list[ReceivedMessage]:
        """Everything visible now, locked (callers settle)."""
        broker = broker or self.broker
        got: list[ReceivedMessage] = []
        while batch := broker.receive(queue or self.queue, max_messages=50, max_wait_seconds=wait if not got else 0.2):
            got.extend(batch)
        return got


def _build(spec: tuple) -> Broker:
    kind, *args = spec
    if kind == "local":
        path, window, lock, max_count = args
        return LocalBroker(Path(path), duplicate_window=timedelta(seconds=window),
                           lock_duration=timedelta(seconds=lock), max_delivery_count=max_count)
    from shared.broker.servicebus import ServiceBusBroker

    return ServiceBusBroker(connection_string=args[0])


def _local_subject(tmp_path: Path) -> Subject:
    # Short enough to test expiry quickly, long enough that a busy 2-core machine settles in time.
    spec = ("local", str(tmp_path / "broker.sqlite3"), 1.0, 2.5, 3)
    return Subject("local", _build(spec), lambda: _build(spec), spec, lock_seconds=2.5, duplicate_window_seconds=1.0,
                   max_delivery_count=3)


def _servicebus_subject() -> Subject:
    from shared.broker.servicebus import ServiceBusBroker

    spec = ("servicebus", SERVICEBUS_CONNECTION)
    broker = _build(spec)
    assert isinstance(broker, ServiceBusBroker)
    props = broker.queue_properties(names.TEAMS)
    for queue in (names.TEAMS, names.EMAIL):
        broker.purge(queue)
    return Subject("servicebus", broker, lambda: _build(spec), spec,
                   lock_seconds=props["lock_seconds"], duplicate_window_seconds=props["duplicate_window_seconds"],
                   max_delivery_count=props["max_delivery_count"])


@pytest.fixture(params=[
    "local",
    pytest.param("servicebus", marks=[pytest.mark.servicebus, pytest.mark.skipif(
        not SERVICEBUS_CONNECTION, reason="set SERVICEBUS_CONNECTION to run the contract against a real namespace")]),
])
def subject(request, tmp_path):
    made = _local_subject(tmp_path) if request.param == "local" else _servicebus_subject()
    extra: list[Broker] = []
    original = made.make_broker

    def make_tracked() -> Broker:
        extra.append(original())
        return extra[-1]

    made.make_broker = make_tracked
    yield made
    for broker in [*extra, made.broker]:
        broker.close()


def msg(body: str = "hello", message_id: str | None = None, **kwargs) -> OutgoingMessage:
    return OutgoingMessage(body=body, message_id=message_id or f"m-{uuid.uuid4().hex}", **kwargs)


def needs_short(subject: Subject, seconds: float, what: str) -> None:
    if seconds > LONGEST_WAIT:
        pytest.skip(f"{what} of {seconds:.0f}s is too long to wait for in a test")


# --- publish and receive ------------------------------------------------------------------------------------------
def test_round_trip_keeps_body_id_subject_and_properties(subject):
    sent = msg("本文 {\"x\": 1}", subject="cross_sell",
               properties={"rule": "cross-sell-b", "attempt": 2, "score": 0.5, "urgent": True})
    before = datetime.now(UTC)
    subject.publish(sent)
    [got] = subject.receive_all()
    assert (got.body, got.message_id, got.subject) == (sent.body, sent.message_id, "cross_sell")
    assert dict(got.properties) == {"rule": "cross-sell-b", "attempt": 2, "score": 0.5, "urgent": True}
    assert got.delivery_count == 1 and got.queue == subject.queue
    assert got.enqueued_at.tzinfo is not None
    assert abs((got.enqueued_at - before).total_seconds()) < 60
    subject.broker.complete(got)


def test_completed_message_is_gone(subject):
    subject.publish(msg())
    [got] = subject.receive_all()
    subject.broker.complete(got)
    assert subject.broker.receive(subject.queue, max_wait_seconds=0.5) == []


def test_batch_of_many_arrives_once_each(subject):
    bodies = {subject.mid(f"b{i}"): "x" * 2000 for i in range(300)}  # ~600 KB: more than one Service Bus batch
    subject.publish(*(msg(body + v, message_id=body) for body, v in bodies.items()))
    got = subject.receive_all()
    assert sorted(m.message_id for m in got) == sorted(bodies)
    for m in got:
        subject.broker.complete(m)


def test_receive_returns_at_most_max_messages(subject):
    subject.publish(*(msg() for _ in range(5)))
    first = subject.broker.receive(subject.queue, max_messages=2, max_wait_seconds=2)
    assert 1 <= len(first) <= 2
    for m in first + subject.receive_all():
        subject.broker.complete(m)


def test_receive_waits_for_a_message_published_meanwhile(subject):
    other = subject.make_broker()
    timer = threading.Timer(0.3, lambda: other.publish(subject.queue, [msg("late")]))
    timer.start()
    try:
        got = subject.broker.receive(subject.queue, max_wait_seconds=10)
    finally:
        timer.join()
    assert [m.body for m in got] == ["late"]
    subject.broker.complete(got[0])


def test_receive_on_empty_queue_returns_nothing_after_wait(subject):
    started = time.monotonic()
    assert subject.broker.receive(subject.queue, max_wait_seconds=0.3) == []
    assert time.monotonic() - started >= 0.25


# --- duplicate detection --------------------------------------------------------------------------------------------
def test_duplicate_message_id_within_window_is_dropped(subject):
    one, two = subject.mid("dup-1"), subject.mid("dup-2")
    subject.publish(msg("first", one))
    subject.publish(msg("second", one), msg("third", two), msg("fourth", two))
    got = subject.receive_all()
    assert sorted((m.message_id, m.body) for m in got) == [(one, "first"), (two, "third")]
    for m in got:
        subject.broker.complete(m)


def test_duplicate_is_dropped_even_after_the_first_was_completed(subject):
    subject.publish(msg("first", subject.mid("done-1")))
    [got] = subject.receive_all()
    subject.broker.complete(got)
    subject.publish(msg("again", subject.mid("done-1")))
    assert subject.broker.receive(subject.queue, max_wait_seconds=0.5) == []


def test_same_id_on_another_queue_is_not_a_duplicate(subject):
    subject.publish(msg("teams", subject.mid("shared-id")))
    subject.publish(msg("email", subject.mid("shared-id")), queue=subject.other_queue)
    [a] = subject.receive_all()
    [b] = subject.receive_all(queue=subject.other_queue)
    assert (a.body, b.body) == ("teams", "email")
    subject.broker.complete(a)
    subject.broker.complete(b)


def test_same_id_after_the_window_is_accepted(subject):
    needs_short(subject, subject.duplicate_window_seconds, "the duplicate-detection window")
    subject.publish(msg("first", subject.mid("late-dup")))
    time.sleep(subject.duplicate_window_seconds + 0.2)
    subject.publish(msg("second", subject.mid("late-dup")))
    got = subject.receive_all()
    assert sorted(m.body for m in got) == ["first", "second"]


# --- scheduling -----------------------------------------------------------------------------------------------------
def test_scheduled_message_is_invisible_until_its_time(subject):
    at = datetime.now(UTC) + timedelta(seconds=2)
    subject.publish(msg("later", scheduled_at=at), msg("now"))
    first = subject.receive_all(wait=1.0)
    assert [m.body for m in first] == ["now"]
    got = subject.broker.receive(subject.queue, max_wait_seconds=15)
    assert [m.body for m in got] == ["later"]
    assert datetime.now(UTC) >= at - timedelta(milliseconds=50)
    for m in first + got:
        subject.broker.complete(m)


def test_scheduled_message_in_the_past_is_visible_now(subject):
    subject.publish(msg("overdue", scheduled_at=datetime.now(UTC) - timedelta(hours=1)))
    [got] = subject.receive_all()
    assert got.body == "overdue"
    subject.broker.complete(got)


# --- peek-lock ------------------------------------------------------------------------------------------------------
def test_locked_message_is_invisible_to_other_receivers(subject):
    subject.publish(msg("only"))
    [got] = subject.receive_all()
    other = subject.make_broker()
    assert other.receive(subject.queue, max_wait_seconds=0.3) == []
    subject.broker.complete(got)


def test_abandon_redelivers_with_incremented_delivery_count(subject):
    subject.publish(msg("retry me"))
    [first] = subject.receive_all()
    subject.broker.abandon(first)
    [second] = subject.receive_all()
    assert (second.message_id, second.body, second.delivery_count) == (first.message_id, "retry me", 2)
    subject.broker.complete(second)


def test_lock_expiry_redelivers_and_the_old_lock_is_lost(subject):
    needs_short(subject, subject.lock_seconds, "the lock duration")
    subject.publish(msg("slow consumer"))
    [first] = subject.receive_all()
    time.sleep(subject.lock_seconds + 0.3)
    other = subject.make_broker()
    [second] = other.receive(subject.queue, max_wait_seconds=5)
    assert (second.message_id, second.delivery_count) == (first.message_id, 2)
    with pytest.raises(Conflict):
        subject.broker.complete(first)
    other.complete(second)
    assert subject.broker.receive(subject.queue, max_wait_seconds=0.5) == []


def test_renewing_the_lock_keeps_the_message_past_its_first_expiry(subject):
    needs_short(subject, subject.lock_seconds, "the lock duration")
    subject.publish(msg("long job"))
    [got] = subject.receive_all()
    other = subject.make_broker()
    for _ in range(3):
        time.sleep(subject.lock_seconds * 0.6)
        subject.broker.renew_lock(got)
    assert other.receive(subject.queue, max_wait_seconds=0.3) == []  # 1.8 lock durations later: still locked
    subject.broker.complete(got)


def test_renewing_a_settled_message_is_a_conflict(subject):
    subject.publish(msg())
    [got] = subject.receive_all()
    subject.broker.renew_lock(got)
    subject.broker.complete(got)
    with pytest.raises(Conflict):
        subject.broker.renew_lock(got)


def test_settling_twice_loses_the_lock(subject):
    subject.publish(msg())
    [got] = subject.receive_all()
    subject.broker.complete(got)
    with pytest.raises(Conflict):
        subject.broker.complete(got)


# --- dead letters ---------------------------------------------------------------------------------------------------
def test_past_max_delivery_count_the_message_is_dead_lettered(subject):
    subject.publish(msg("poison", subject.mid("poison-1")))
    for attempt in range(1, subject.max_delivery_count + 1):
        [got] = subject.receive_all()
        assert got.delivery_count == attempt
        subject.broker.abandon(got)
    assert subject.broker.receive(subject.queue, max_wait_seconds=1) == []
    [dead] = subject.broker.peek_dead_letters(subject.queue)
    assert (dead.message_id, dead.body) == (subject.mid("poison-1"), "poison")
    assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"


def test_expired_locks_count_towards_max_delivery_count(subject):
    needs_short(subject, subject.lock_seconds * subject.max_delivery_count, "lock duration × max delivery count")
    subject.publish(msg("crashing consumer", subject.mid("crash-1")))
    for _ in range(subject.max_delivery_count):
        assert len(subject.receive_all()) == 1  # received, never settled: the consumer "crashed"
        time.sleep(subject.lock_seconds + 0.2)
    assert subject.broker.receive(subject.queue, max_wait_seconds=0.5) == []
    [dead] = subject.broker.peek_dead_letters(subject.queue)
    assert (dead.message_id, dead.dead_letter_reason) == (subject.mid("crash-1"), "MaxDeliveryCountExceeded")


def test_dead_letter_keeps_reason_and_description_and_peek_does_not_remove(subject):
    subject.publish(msg("bad", subject.mid("bad-1")), msg("good", subject.mid("good-1")))
    got = {m.message_id: m for m in subject.receive_all()}
    subject.broker.dead_letter(got[subject.mid("bad-1")], "InvalidInput", "field 'email' is not an address")
    subject.broker.complete(got[subject.mid("good-1")])
    for _ in range(2):
        [dead] = subject.broker.peek_dead_letters(subject.queue)
        assert (dead.message_id, dead.body, dead.delivery_count) == (subject.mid("bad-1"), "bad", 1)
        assert (dead.dead_letter_reason, dead.dead_letter_description) == (
            "InvalidInput", "field 'email' is not an address")
    assert subject.broker.receive(subject.queue, max_wait_seconds=0.5) == []
    assert subject.broker.peek_dead_letters(subject.other_queue) == []


def test_dead_letters_peek_oldest_first(subject):
    subject.publish(*(msg(str(i), subject.mid(f"dl-{i}")) for i in range(3)))
    got = sorted(subject.receive_all(), key=lambda m: m.message_id)
    for m in got:
        subject.broker.dead_letter(m, "Test")
    expected = [subject.mid(f"dl-{i}") for i in range(3)]
    assert [m.message_id for m in subject.broker.peek_dead_letters(subject.queue)] == expected
    assert len(subject.broker.peek_dead_letters(subject.queue, max_messages=2)) == 2


def test_replay_moves_dead_letters_back_with_a_fresh_delivery_count(subject):
    subject.publish(msg("again", subject.mid("replay-1"), subject="s", properties={"rule": "r"}))
    [got] = subject.receive_all()
    subject.broker.dead_letter(got, "Transient", "mailbox throttled for a day")
    assert subject.broker.replay_dead_letters(subject.queue) == 1
    assert subject.broker.peek_dead_letters(subject.queue) == []
    [back] = subject.receive_all()
    assert (back.body, back.subject, back.delivery_count) == ("again", "s", 1)
    # A new id, or duplicate detection would drop the replay; the original stays recognisable.
    original = subject.mid("replay-1")
    assert back.message_id != original and original_message_id(back.message_id) == original
    assert back.properties["rule"] == "r" and back.properties[REPLAYS_PROPERTY] == 1
    subject.broker.dead_letter(back, "Again")
    assert subject.broker.replay_dead_letters(subject.queue) == 1
    [twice] = subject.receive_all()
    assert original_message_id(twice.message_id) == subject.mid("replay-1") and twice.properties[REPLAYS_PROPERTY] == 2
    subject.broker.complete(twice)


def test_replay_only_the_named_ids(subject):
    subject.publish(msg("a", subject.mid("sel-a")), msg("b", subject.mid("sel-b")), msg("c", subject.mid("sel-c")))
    for m in subject.receive_all():
        subject.broker.dead_letter(m, "Test")
    assert subject.broker.replay_dead_letters(subject.queue, [subject.mid("sel-a"), subject.mid("sel-c"), "?"]) == 2
    assert [m.message_id for m in subject.broker.peek_dead_letters(subject.queue)] == [subject.mid("sel-b")]
    back = subject.receive_all()
    assert sorted(original_message_id(m.message_id) for m in back) == [subject.mid("sel-a"), subject.mid("sel-c")]
    for m in back:
        subject.broker.complete(m)


# --- validation -------------------------------------------------------------------------------------------------------
def test_rejects_what_service_bus_would_reject(subject):
    with pytest.raises(InvalidInput):
        subject.publish(msg(message_id="x" * 129))
    with pytest.raises(InvalidInput):
        subject.publish(msg(scheduled_at=datetime(2030, 1, 1)))  # naive: ambiguous
    with pytest.raises(PayloadTooLarge):
        subject.publish(msg("x" * (257 * 1024)))
    assert subject.broker.receive(subject.queue, max_wait_seconds=0.3) == []


# --- competing consumers ----------------------------------------------------------------------------------------------
def _compete(spec: tuple, queue: str, results, ready) -> None:
    """Child process: receive and complete until the queue stays empty; report every id received."""
    broker = _build(spec)
    ready.wait(60)  # both workers start together, or the first to import drains the queue alone
    seen = []
    try:
        while batch := broker.receive(queue, max_messages=5, max_wait_seconds=1.5):
            for m in batch:
                seen.append(m.message_id)
                time.sleep(0.002)  # some work, so the two interleave
                broker.complete(m)
    finally:
        results.put(seen)
        broker.close()


def test_two_processes_never_receive_the_same_message(subject):
    ids = [subject.mid(f"p-{i}") for i in range(200)]
    subject.publish(*(msg(i, i) for i in ids))
    ctx = multiprocessing.get_context("spawn")
    results, ready = ctx.Queue(), ctx.Barrier(2)
    workers = [ctx.Process(target=_compete, args=(subject.spec, subject.queue, results, ready)) for _ in range(2)]
    for w in workers:
        w.start()
    seen = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(30)
    assert all(seen), "both processes should have received some messages"
    assert sorted(seen[0] + seen[1]) == sorted(ids)  # each id exactly once across both


def _receive_and_die(spec: tuple, queue: str) -> None:
    broker = _build(spec)
    assert broker.receive(queue, max_wait_seconds=5)
    os._exit(1)  # crash while holding the lock


def test_a_crashed_consumer_lock_expires_and_the_message_is_redelivered(subject):
    needs_short(subject, subject.lock_seconds, "the lock duration")
    subject.publish(msg("survives", subject.mid("crash-survivor")))
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_receive_and_die, args=(subject.spec, subject.queue))
    child.start()
    child.join(60)
    assert child.exitcode == 1
    got = subject.broker.receive(subject.queue, max_wait_seconds=subject.lock_seconds + 5)
    assert [(m.message_id, m.delivery_count) for m in got] == [(subject.mid("crash-survivor"), 2)]
    subject.broker.complete(got[0])


# --- local-only: durability ----------------------------------------------------------------------------------------
def test_local_broker_keeps_messages_across_reopen(tmp_path):
    path = tmp_path / "b.sqlite3"
    first = LocalBroker(path)
    first.publish("q", [msg("kept", "k-1", scheduled_at=datetime.now(UTC) - timedelta(seconds=1))])
    first.close()
    second = LocalBroker(path)
    [got] = second.receive("q")
    assert (got.message_id, got.body) == ("k-1", "kept")
    second.publish("q", [msg("dup", "k-1")])  # the window survived too
    second.complete(got)
    assert second.receive("q") == []
    second.close()


def test_local_broker_with_a_controlled_clock(tmp_path):
    now = [1_000_000.0]
    broker = LocalBroker(tmp_path / "c.sqlite3", duplicate_window=timedelta(minutes=10),
                         lock_duration=timedelta(seconds=60), clock=lambda: now[0])
    broker.publish("q", [msg("a", "id-a")])
    assert len(broker.receive("q")) == 1
    now[0] += 59
    assert broker.receive("q") == []
    now[0] += 2
    [again] = broker.receive("q")
    assert again.delivery_count == 2
    broker.complete(again)
    now[0] += 9 * 60 - 2  # still inside the 10-minute window of the first publish
    broker.publish("q", [msg("b", "id-a")])
    assert broker.receive("q") == []
    now[0] += 5
    broker.publish("q", [msg("c", "id-a")])
    assert [m.body for m in broker.receive("q")] == ["c"]
    broker.close()

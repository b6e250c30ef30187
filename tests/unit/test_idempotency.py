"""The in-progress → completed/failed logic with expiring leases (in-memory backend; the table backend shares it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.delivery.idempotency import CLAIMED, COMPLETED, FAILED, IN_PROGRESS, InMemoryDedupeStore
from shared.domain.errors import Conflict


class Clock:
    def __init__(self):
        self.now = datetime(2026, 1, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_first_claim_holds_and_a_second_sees_in_progress_until_the_lease_expires():
    clock = Clock()
    store = InMemoryDedupeStore(lease=timedelta(minutes=5), clock=clock)
    first = store.claim("k")
    assert first.outcome == CLAIMED and first.record.attempts == 1
    assert store.claim("k").outcome == IN_PROGRESS
    clock.now += timedelta(minutes=6)
    takeover = store.claim("k")
    assert takeover.outcome == CLAIMED and takeover.record.attempts == 2
    assert not takeover.record.uncertain  # the first holder never started sending


def test_a_crash_while_sending_makes_the_takeover_uncertain():
    clock = Clock()
    store = InMemoryDedupeStore(clock=clock)
    store.mark_sending(store.claim("k").record)
    clock.now += timedelta(hours=1)
    assert store.claim("k").record.uncertain


def test_completed_and_failed_records_are_final():
    store = InMemoryDedupeStore()
    store.complete(store.claim("a").record, {"reference": "m1"})
    store.fail(store.claim("b").record, "413 too large")
    assert store.claim("a").outcome == COMPLETED and store.get("a").result == {"reference": "m1"}
    assert store.claim("b").outcome == FAILED and store.get("b").reason == "413 too large"


def test_release_lets_the_next_claim_take_over_at_once_and_counts_failures():
    store = InMemoryDedupeStore()
    released = store.release(store.claim("k").record, uncertain=True, failed=True)
    assert released.failures == 1
    again = store.claim("k")
    assert again.outcome == CLAIMED and again.record.uncertain and again.record.attempts == 2


def test_a_stale_holder_cannot_overwrite_a_takeover():
    clock = Clock()
    store = InMemoryDedupeStore(clock=clock)
    stale = store.claim("k").record
    clock.now += timedelta(hours=1)
    store.claim("k")
    with pytest.raises(Conflict):  # the etag moved on
        store.complete(stale)

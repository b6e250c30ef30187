"""Idempotency records, rate limits and suppressions on Table Storage (Azurite), under real concurrency."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

from shared.delivery.idempotency import CLAIMED, COMPLETED, IN_PROGRESS, TableDedupeStore
from shared.delivery.ratelimit import CONCURRENCY, RATE, WINDOW, Budget, Lease, RateLimiter
from shared.delivery.suppressions import SuppressionStore
from shared.domain.names import SUPPRESSIONS


def test_exactly_one_of_many_concurrent_claims_holds_the_record(container):
    stores = [TableDedupeStore(container.storage) for _ in range(8)]
    barrier = threading.Barrier(8)

    def claim(store):
        barrier.wait()
        return store.claim("campaign:C-9:2026-01").outcome

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(claim, stores))
    assert outcomes.count(CLAIMED) == 1 and outcomes.count(IN_PROGRESS) == 7


def test_table_record_round_trips_and_completes(container):
    store = TableDedupeStore(container.storage)
    record = store.mark_sending(store.claim("key/with#odd?chars").record)
    store.complete(record, {"reference": "AAMk1"})
    claim = store.claim("key/with#odd?chars")
    assert claim.outcome == COMPLETED and claim.record.result["reference"] == "AAMk1"


def test_two_limiters_share_one_paced_rate(container):
    clock = [1000.0]
    limiters = [RateLimiter(container.storage, clock=lambda: clock[0]) for _ in range(2)]
    budget = Budget(RATE, "mailbox:x", limit=30, seconds=60.0)
    barrier = threading.Barrier(10)

    def take(i):
        barrier.wait()
        return limiters[i % 2].reserve(budget)

    with ThreadPoolExecutor(10) as pool:
        slots = sorted(pool.map(take, range(10)))
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert slots[0] == 1000.0
    assert all(abs(gap - budget.interval) < 1e-6 for gap in gaps)  # no two instances got the same slot
    assert budget.interval >= 2.0  # never faster than 30/min
    limiters[0].block_until(budget, 5000.0)
    assert limiters[1].reserve(budget) == 5000.0  # a 429's Retry-After holds for every instance


def test_rolling_window_counts_recipients(container):
    clock = [0.0]
    limiter = RateLimiter(container.storage, clock=lambda: clock[0])
    budget = Budget(WINDOW, "recipients", limit=10, seconds=24 * 3600.0, cost=4)
    assert limiter.take_window(budget) == 0.0 and limiter.take_window(budget) == 0.0
    wait = limiter.take_window(budget)  # 8 used, 4 more would make 12
    assert 0 < wait <= 24 * 3600.0
    clock[0] += wait
    assert limiter.take_window(budget) == 0.0


def test_concurrency_leases_cap_requests_in_flight(container):
    limiter = RateLimiter(container.storage)
    budget = Budget(CONCURRENCY, "mailbox-requests", limit=4, seconds=60.0)
    leases = [limiter.acquire(budget) for _ in range(4)]
    assert all(isinstance(lease, Lease) for lease in leases)
    assert isinstance(limiter.acquire(budget), float)  # a fifth must wait
    limiter.release(leases[0])
    assert isinstance(limiter.acquire(budget), Lease)


def test_suppressions_are_idempotent_and_keep_no_address_in_clear(container):
    store = SuppressionStore(container.storage)
    assert store.add_customer("C-001", "one-click") and not store.add_customer("C-001", "one-click")
    store.add_email("Taro@Example.co.jp", "import")
    assert store.is_suppressed(customer_id="C-001")
    assert store.is_suppressed(email="taro@example.co.jp")
    assert not store.is_suppressed(customer_id="C-002", email="other@example.com")
    rows = list(container.tables.table(SUPPRESSIONS).list_entities())
    assert all("example" not in row["RowKey"].lower() for row in rows)

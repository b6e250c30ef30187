"""Customer store against Azurite: batching, shards, chunking, ETags, size limit."""

from __future__ import annotations

import pytest

from shared.customers.store import MAX_STRING_CHARS, customer_to_entity, entity_size, shard_of
from shared.domain.errors import Conflict, PayloadTooLarge
from shared.domain.model import Customer


def make(i: int, **extra) -> Customer:
    return Customer.from_dict({
        "id": f"C-{i:05d}", "name": f"会社{i}", "email": f"c{i}@example.com",
        "owner": {"name": "佐藤 花子", "email": "hanako@contoso.com"}, "products": ["A"],
        "purchases": [{"product": "A", "date": "2025-11-22", "amount": 1000}],
        "contract_end": "2026-02-15", "birthday": "1980-11-22", **extra})


def test_batched_upsert_round_trips_and_spreads_over_shards(container):
    store = container.customers
    customers = [make(i) for i in range(250)]
    assert store.upsert_many(customers) == []
    read = sorted(store.iter_all(), key=lambda c: c.id)
    assert read == customers
    shards = {shard_of(c.id, store.shards) for c in customers}
    assert len(shards) > store.shards * 0.9  # 250 ids over 64 shards touch nearly all


def test_reimport_is_an_idempotent_upsert(container):
    store = container.customers
    store.upsert_many([make(1), make(2)])
    store.upsert_many([make(1, plan="Premium"), make(2)])
    assert store.get("C-00001").customer.plan == "Premium"
    assert len(list(store.iter_all())) == 2


def test_long_nested_fields_are_chunked_and_reassembled(container):
    purchases = [{"product": f"P{i}", "date": "2024-01-01", "amount": i, "deal_id": f"D-{i:06d}"} for i in range(2000)]
    customer = make(3, purchases=purchases)
    entity = customer_to_entity(customer, container.customers.shards)
    assert "purchases_json_1" in entity and all(
        len(v) <= MAX_STRING_CHARS for k, v in entity.items() if k.startswith("purchases_json"))
    container.customers.upsert_many([customer])
    assert container.customers.get(customer.id).customer == customer


def test_entity_over_one_mebibyte_is_refused_before_writing():
    purchases = [{"product": "X" * 50, "date": "2024-01-01", "deal_id": "D" * 60} for _ in range(6000)]
    with pytest.raises(PayloadTooLarge, match="1 MiB"):
        customer_to_entity(make(4, purchases=purchases), 64)


def test_etag_guards_concurrent_writers(container):
    store = container.customers
    etag = store.put(make(5), None)
    with pytest.raises(Conflict):
        store.put(make(5), None)  # insert of an existing id
    first = store.get("C-00005")
    store.put(make(5, plan="Standard"), first.etag)
    with pytest.raises(Conflict):
        store.put(make(5, plan="Basic"), first.etag)  # stale etag
    assert store.get("C-00005").customer.plan == "Standard"
    assert etag != store.get("C-00005").etag


def test_entity_size_counts_utf16():
    assert entity_size({"PartitionKey": "ab", "RowKey": "c", "x": "あい"}) == 4 + 4 + 2 + (8 + 2 + 4 + 4)

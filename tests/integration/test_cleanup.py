"""Housekeeping against Azurite: expired idempotency records and old audit rows go, everything else stays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.delivery.idempotency import TableDedupeStore
from shared.domain.names import APPROVALS, DELIVERIES, JOURNEY_HISTORY
from shared.ops.cleanup import purge_deliveries

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def test_purge_deletes_only_what_expired(container):
    table = container.tables.table(DELIVERIES)
    clock = {"now": NOW - timedelta(days=40)}
    store = TableDedupeStore(container.storage, clock=lambda: clock["now"])
    for i in range(130):  # completed 40 days ago: expired after the 30-day retention
        store.complete(store.claim(f"old-{i}").record)
    clock["now"] = NOW - timedelta(days=1)
    for i in range(5):
        store.complete(store.claim(f"recent-{i}").record)
    in_flight = store.claim("sending-now").record  # no expiry while a send is in progress
    for day, count in ((500, 120), (10, 3)):
        stamp = f"audit-{NOW - timedelta(days=day):%Y%m%d}"
        for i in range(count):
            table.create_entity({"PartitionKey": stamp, "RowKey": f"r{i:03d}", "status": "sent"})
    table.create_entity({"PartitionKey": "conversation", "RowKey": "x", "value": "cached"})
    approvals = container.tables.table(APPROVALS)
    for name, status, decided in (("ap-old", "approved", NOW - timedelta(days=401)),
                                  ("ap-recent", "rejected", NOW - timedelta(days=3)),
                                  ("ap-open", "pending", None)):
        approvals.create_entity({"PartitionKey": name, "RowKey": "approval", "status": status,
                                 **({"decided_at": decided} if decided else {})})

    steps = container.tables.table(JOURNEY_HISTORY)
    for row, at in (("00000001", NOW - timedelta(days=401)), ("00000002", NOW - timedelta(days=20))):
        steps.create_entity({"PartitionKey": "C-1", "RowKey": row, "to_stage": "contract", "at": at})

    report = purge_deliveries(container.storage, NOW, audit_retention_days=400)

    assert (report.idempotency_records, report.audit_rows, report.approvals, report.journey_steps) == (130, 120, 1, 1)
    assert [row["RowKey"] for row in steps.list_entities()] == ["00000002"]
    assert {row["PartitionKey"] for row in approvals.list_entities()} == {"ap-recent", "ap-open"}
    assert store.get("old-7") is None and store.get("recent-3") is not None
    assert store.get(in_flight.key) is not None
    left = {row["PartitionKey"] for row in table.list_entities(select=["PartitionKey"])}
    assert f"audit-{NOW - timedelta(days=10):%Y%m%d}" in left and "conversation" in left
    assert not any(p == f"audit-{NOW - timedelta(days=500):%Y%m%d}" for p in left)
    assert purge_deliveries(container.storage, NOW, 400) == type(report)(0, 0, 0, 0)  # idempotent

"""Housekeeping Table Storage cannot do itself (it has no TTL): delete expired delivery records, old audit rows,
long-decided approvals and old journey history."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from azure.data.tables import TableClient, TransactionOperation

from shared.approvals.flow import PENDING
from shared.customers.store import BATCH_LIMIT
from shared.domain.names import APPROVALS, DELIVERIES, JOURNEY_HISTORY
from shared.storage.tables import TableAccess

IDEMPOTENCY_PARTITIONS = tuple(f"d{i:02x}" for i in range(256))  # TableDedupeStore: `d` + two hex digits


@dataclass(frozen=True)
class CleanupReport:
    idempotency_records: int
    audit_rows: int
    approvals: int = 0
    journey_steps: int = 0


def purge_deliveries(tables: TableAccess, now: datetime, audit_retention_days: int) -> CleanupReport:
    """Delete idempotency records whose `expires_at` passed and audit partitions older than the retention.

    Records without `expires_at` (a send still in progress) are never touched.
    """
    client = tables.table(DELIVERIES)
    records = 0
    for partition in IDEMPOTENCY_PARTITIONS:
        rows = client.query_entities("PartitionKey eq @pk and expires_at lt @now",
                                     parameters={"pk": partition, "now": now}, select=["PartitionKey", "RowKey"])
        records += _delete(client, rows)
    cutoff = f"audit-{(now - timedelta(days=audit_retention_days)):%Y%m%d}"
    old_audit = client.query_entities("PartitionKey ge 'audit-' and PartitionKey lt @cutoff",
                                      parameters={"cutoff": cutoff}, select=["PartitionKey", "RowKey"])
    audit_rows = _delete(client, old_audit)
    # Decided approvals hold the rendered mail: keep them as long as the audit, then let them go.
    decided = tables.table(APPROVALS).query_entities(
        "status ne @pending and decided_at lt @cutoff",
        parameters={"pending": PENDING, "cutoff": now - timedelta(days=audit_retention_days)},
        select=["PartitionKey", "RowKey"])
    approvals = _delete(tables.table(APPROVALS), decided)
    # Journey steps are history, not state (the customer keeps its stage): the same retention.
    old_steps = tables.table(JOURNEY_HISTORY).query_entities(
        "at lt @cutoff", parameters={"cutoff": now - timedelta(days=audit_retention_days)},
        select=["PartitionKey", "RowKey"])
    return CleanupReport(records, audit_rows, approvals, _delete(tables.table(JOURNEY_HISTORY), old_steps))


def _delete(client: TableClient, rows: Iterable[dict]) -> int:
    """Batched deletes (≤ 100 per transaction, one partition each); returns how many rows went."""
    deleted = 0
    batch: list[dict] = []
    for row in rows:
        if batch and (len(batch) == BATCH_LIMIT or batch[0]["PartitionKey"] != row["PartitionKey"]):
            client.submit_transaction([(TransactionOperation.DELETE, r) for r in batch])
            deleted += len(batch)
            batch = []
        batch.append({"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"]})
    if batch:
        client.submit_transaction([(TransactionOperation.DELETE, r) for r in batch])
        deleted += len(batch)
    return deleted

"""Housekeeping Table Storage cannot do itself (it has no TTL): delete expired delivery records, old audit rows,
long-decided approvals, old journey history and rep digests of past days. (Contact log rows prune themselves on
every write.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.approvals.flow import ApprovalStore
from shared.contact.digest import DigestBook
from shared.delivery.idempotency import RECORD_PARTITIONS
from shared.domain.names import DELIVERIES
from shared.journeys.history import JourneyHistory
from shared.storage.backend import Storage

DIGEST_RETENTION_DAYS = 7
IDEMPOTENCY_PARTITIONS = RECORD_PARTITIONS  # the idempotency records' spread partitions, `d00`..`dff`


@dataclass(frozen=True)
class CleanupReport:
    idempotency_records: int
    audit_rows: int
    approvals: int = 0
    journey_steps: int = 0
    digests: int = 0


def purge_deliveries(storage: Storage, now: datetime, audit_retention_days: int) -> CleanupReport:
    """Delete idempotency records whose `expires_at` passed and audit partitions older than the retention.

    Records without `expires_at` (a send still in progress) are never touched.
    """
    table = storage.table(DELIVERIES)
    keys = ["PartitionKey", "RowKey"]
    records = 0
    for partition in IDEMPOTENCY_PARTITIONS:
        rows = table.query("PartitionKey eq @pk and expires_at lt @now", {"pk": partition, "now": now}, select=keys)
        records += table.delete_many((row["PartitionKey"], row["RowKey"]) for row in rows)
    cutoff = f"audit-{(now - timedelta(days=audit_retention_days)):%Y%m%d}"
    old_audit = table.query("PartitionKey ge 'audit-' and PartitionKey lt @cutoff", {"cutoff": cutoff}, select=keys)
    audit_rows = table.delete_many((row["PartitionKey"], row["RowKey"]) for row in old_audit)
    # Decided approvals hold the rendered mail: keep them as long as the audit, then let them go.
    approvals = ApprovalStore(storage)
    decided = approvals.delete_many(approvals.decided_before(now - timedelta(days=audit_retention_days)))
    # Journey steps are history, not state (the customer keeps its stage): the same retention.
    steps = JourneyHistory(storage).delete_older_than(now - timedelta(days=audit_retention_days))
    # Rep digests are sent on their day; a week later their rows only take room.
    digests = DigestBook(storage).purge_before((now - timedelta(days=DIGEST_RETENTION_DAYS)).date())
    return CleanupReport(records, audit_rows, decided, steps, digests)

"""Idempotency records for deliveries, modelled on AWS Powertools' idempotency layer.

A record moves `in_progress` (with a lease that expires) → `completed` (or `failed`, permanent). A second worker
that finds a record `in_progress` with a live lease backs off; one that finds the lease expired takes the record
over with an ETag compare-and-swap, so exactly one worker holds it at a time. A redelivered message whose record is
`completed` is acknowledged without sending.

Beyond Powertools, a record remembers its `stage`: a worker that crashed (or timed out) after it started the external
send leaves `stage == "sending"`, and whoever takes the record over learns that the outcome is *uncertain* — the
mail may have gone out — so it must look for it (Sent Items) before sending again.

Records keep their dedupe key and technical metadata only (no addresses, names or bodies).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.errors import Conflict, NotFound, TransientError
from shared.domain.names import DELIVERIES
from shared.domain.vocabulary import DeliveryRecordStatus, DeliveryStage
from shared.storage.backend import Entity, Storage, Table, etag_of
from shared.storage.keys import digest, spread_partition, spread_partitions

IN_PROGRESS, COMPLETED, FAILED = DeliveryRecordStatus
CLAIMED, SENDING = DeliveryStage

DEFAULT_LEASE = timedelta(minutes=5)  # longer than one send, shorter than a Service Bus lock renewal window
DEFAULT_RETENTION = timedelta(days=30)  # completed records are kept this long (a cleanup timer deletes them)

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DedupeRecord:
    key: str
    status: str
    stage: str = CLAIMED
    attempts: int = 1  # claims, including takeovers after reschedules
    failures: int = 0  # attempts that ended in a transient failure (drives backoff and the attempt limit)
    uncertain: bool = False
    lease_until: datetime | None = None
    expires_at: datetime | None = None
    result: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None
    etag: str | None = None


@dataclass(frozen=True)
class DeliveryClaim:
    """What `claim` found: `claimed` (this worker holds the record now), `completed`, `failed` or `in_progress`
    (another worker holds a live lease until `record.lease_until`)."""

    outcome: str
    record: DedupeRecord

    @property
    def held(self) -> bool:
        return self.outcome == CLAIMED


RECORD_PREFIX = "d"  # PartitionKey `d00`..`dff`: records spread over 256 partitions by their key's digest
RECORD_PARTITIONS = spread_partitions(RECORD_PREFIX)


def record_keys(key: str) -> tuple[str, str]:
    """(PartitionKey, RowKey) of a dedupe key's record: the digest spreads the load (and the cleanup timer scans the
    partitions one by one); the key itself is kept in clear in the `dedupe_key` column."""
    row = digest(key)
    return spread_partition(RECORD_PREFIX, row), row


class DedupeStore:
    """The in-progress/completed/expiry logic over a storage table (`Deliveries`, any backend).

    The decisions are one compare-and-swap per step, so exactly one worker holds a record at a time."""

    def __init__(self, table: Table, *, lease: timedelta = DEFAULT_LEASE, retention: timedelta = DEFAULT_RETENTION,
                 clock: Clock = _utcnow):
        self.table = table
        self.lease = lease
        self.retention = retention
        self.clock = clock

    def get(self, key: str) -> DedupeRecord | None:
        """The record of a key, or None."""
        entity = self.table.get(*record_keys(key))
        return None if entity is None else _from_entity(entity)

    def claim(self, key: str) -> DeliveryClaim:
        """Take the record of `key` for this worker, or report why not (see `DeliveryClaim`)."""
        found: list[DeliveryClaim] = []
        now = self.clock()
        new = DedupeRecord(key, IN_PROGRESS, lease_until=now + self.lease)

        def decide(entity: Entity | None) -> dict | None:
            if entity is None:  # deleted since: claim it afresh
                found[:] = [DeliveryClaim(CLAIMED, new)]
                return _to_entity(new)
            existing = _from_entity(entity)
            if existing.status in (COMPLETED, FAILED):
                found[:] = [DeliveryClaim(existing.status, existing)]
                return None
            if existing.lease_until and existing.lease_until > self.clock():
                found[:] = [DeliveryClaim(IN_PROGRESS, existing)]
                return None
            takeover = replace(existing, stage=CLAIMED, attempts=existing.attempts + 1,
                               lease_until=self.clock() + self.lease,
                               uncertain=existing.uncertain or existing.stage == SENDING)
            found[:] = [DeliveryClaim(CLAIMED, takeover)]
            return _to_entity(takeover)

        pk, rk = record_keys(key)
        # Most keys are new: try the insert first (one round trip), read only when it exists.
        found[:] = [DeliveryClaim(CLAIMED, new)]
        try:
            etag = self.table.compare_and_swap(pk, rk, decide, attempts=5, insert_first=_to_entity(new), pause=0)
        except TransientError:
            raise TransientError(f"idempotency record {key!r} is contended; try again") from None
        claim = found[0]
        return DeliveryClaim(claim.outcome, replace(claim.record, etag=etag)) if etag else claim

    def _replace(self, record: DedupeRecord) -> DedupeRecord:
        """Replace if `record.etag` still matches; Conflict otherwise. Returns the record with its new etag."""
        try:
            etag = self.table.replace(_to_entity(record), record.etag)
        except (Conflict, NotFound):
            raise Conflict(f"delivery record {record.key!r} changed since it was read") from None
        return replace(record, etag=etag)

    def mark_sending(self, record: DedupeRecord) -> DedupeRecord:
        """Record that the external send starts now (so a crash leaves the outcome flagged uncertain)."""
        return self._replace(replace(record, stage=SENDING, lease_until=self.clock() + self.lease))

    def release(self, record: DedupeRecord, *, uncertain: bool, failed: bool = False) -> DedupeRecord:
        """Give the record up without completing it (rescheduled): the next claim takes it over at once.
        `failed` counts a transient failure; `uncertain` is sticky until the record completes."""
        return self._replace(replace(record, stage=CLAIMED, lease_until=self.clock(),
                                     uncertain=record.uncertain or uncertain,
                                     failures=record.failures + (1 if failed else 0)))

    def complete(self, record: DedupeRecord, result: Mapping[str, Any] | None = None) -> DedupeRecord:
        return self._replace(replace(record, status=COMPLETED, lease_until=None, result=dict(result or {}),
                                     expires_at=self.clock() + self.retention))

    def fail(self, record: DedupeRecord, reason: str) -> DedupeRecord:
        """Permanent failure: redeliveries are acknowledged without another attempt."""
        return self._replace(replace(record, status=FAILED, lease_until=None, reason=reason[:1000],
                                     expires_at=self.clock() + self.retention))


class TableDedupeStore(DedupeStore):
    """Records in the `Deliveries` table of a storage backend."""

    def __init__(self, storage: Storage, **kwargs: Any):
        super().__init__(storage.table(DELIVERIES), **kwargs)


class InMemoryDedupeStore(DedupeStore):
    """A process-local store (unit tests, dry runs): the same logic on the in-memory backend."""

    def __init__(self, **kwargs: Any):
        from shared.storage.memory import MemoryStorage

        super().__init__(MemoryStorage().table(DELIVERIES), **kwargs)


BaseDedupeStore = DedupeStore  # what the delivery service depends on


def _to_entity(record: DedupeRecord) -> dict:
    pk, rk = record_keys(record.key)
    entity: dict[str, Any] = {
        "PartitionKey": pk, "RowKey": rk, "dedupe_key": record.key, "status": record.status,
        "stage": record.stage, "attempts": record.attempts, "failures": record.failures,
        "uncertain": record.uncertain,
        "result_json": json.dumps(dict(record.result), separators=(",", ":")),
    }
    if record.lease_until:
        entity["lease_until"] = record.lease_until
    if record.expires_at:
        entity["expires_at"] = record.expires_at
    if record.reason:
        entity["reason"] = record.reason
    return entity


def _from_entity(entity: Mapping[str, Any]) -> DedupeRecord:
    return DedupeRecord(
        key=entity["dedupe_key"], status=entity["status"], stage=entity.get("stage", CLAIMED),
        attempts=int(entity.get("attempts", 1)), failures=int(entity.get("failures", 0)),
        uncertain=bool(entity.get("uncertain", False)),
        lease_until=_aware(entity.get("lease_until")), expires_at=_aware(entity.get("expires_at")),
        result=json.loads(entity.get("result_json") or "{}"), reason=entity.get("reason"),
        etag=etag_of(entity))


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)

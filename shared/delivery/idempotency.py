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

import hashlib
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.data.tables import TableClient, UpdateMode

from shared.domain.errors import Conflict, TransientError

IN_PROGRESS = "in_progress"
COMPLETED = "completed"
FAILED = "failed"

CLAIMED = "claimed"  # stage: held, nothing sent yet
SENDING = "sending"  # stage: the external send was started; its outcome is unknown until completed

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
class Claim:
    """What `claim` found: `claimed` (this worker holds the record now), `completed`, `failed` or `in_progress`
    (another worker holds a live lease until `record.lease_until`)."""

    outcome: str
    record: DedupeRecord

    @property
    def held(self) -> bool:
        return self.outcome == CLAIMED


class BaseDedupeStore(ABC):
    """The in-progress/completed/expiry logic over three storage primitives a backend implements."""

    def __init__(self, *, lease: timedelta = DEFAULT_LEASE, retention: timedelta = DEFAULT_RETENTION,
                 clock: Clock = _utcnow):
        self.lease = lease
        self.retention = retention
        self.clock = clock

    # --- storage primitives ----------------------------------------------------------------------------------
    @abstractmethod
    def get(self, key: str) -> DedupeRecord | None:
        """The record of a key, or None."""

    @abstractmethod
    def _create(self, record: DedupeRecord) -> DedupeRecord:
        """Insert; raise Conflict when the key exists. Returns the record with its new etag."""

    @abstractmethod
    def _replace(self, record: DedupeRecord) -> DedupeRecord:
        """Replace if `record.etag` still matches; raise Conflict otherwise. Returns the record with its new etag."""

    # --- logic -----------------------------------------------------------------------------------------------
    def claim(self, key: str) -> Claim:
        """Take the record of `key` for this worker, or report why not (see `Claim`)."""
        for _ in range(5):
            now = self.clock()
            try:
                record = self._create(DedupeRecord(key, IN_PROGRESS, lease_until=now + self.lease))
                return Claim(CLAIMED, record)
            except Conflict:
                pass
            existing = self.get(key)
            if existing is None:
                continue  # deleted between the two calls: try to create again
            if existing.status in (COMPLETED, FAILED):
                return Claim(existing.status, existing)
            if existing.lease_until and existing.lease_until > now:
                return Claim(IN_PROGRESS, existing)
            takeover = replace(existing, stage=CLAIMED, attempts=existing.attempts + 1, lease_until=now + self.lease,
                               uncertain=existing.uncertain or existing.stage == SENDING)
            try:
                return Claim(CLAIMED, self._replace(takeover))
            except Conflict:
                continue  # another worker took it over first; look again
        raise TransientError(f"idempotency record {key!r} is contended; try again")

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


class InMemoryDedupeStore(BaseDedupeStore):
    """A process-local backend (unit tests, dry runs). Same semantics as the table backend."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._records: dict[str, DedupeRecord] = {}
        self._lock = threading.Lock()
        self._version = 0

    def _next_etag(self) -> str:
        self._version += 1
        return str(self._version)

    def get(self, key: str) -> DedupeRecord | None:
        return self._records.get(key)

    def _create(self, record: DedupeRecord) -> DedupeRecord:
        with self._lock:
            if record.key in self._records:
                raise Conflict(f"{record.key} exists")
            stored = self._records[record.key] = replace(record, etag=self._next_etag())
            return stored

    def _replace(self, record: DedupeRecord) -> DedupeRecord:
        with self._lock:
            current = self._records.get(record.key)
            if current is None or current.etag != record.etag:
                raise Conflict(f"{record.key} changed")
            stored = self._records[record.key] = replace(record, etag=self._next_etag())
            return stored


def record_row_key(key: str) -> str:
    """Table keys may not hold '/', '\\', '#', '?' or control characters: use a digest of the dedupe key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class TableDedupeStore(BaseDedupeStore):
    """Records in the `Deliveries` table: PartitionKey `d<2 hex>` (spreads load), RowKey = sha256(key)."""

    def __init__(self, client: TableClient, **kwargs: Any):
        super().__init__(**kwargs)
        self.client = client

    @staticmethod
    def _keys(key: str) -> tuple[str, str]:
        row = record_row_key(key)
        return f"d{row[:2]}", row

    def get(self, key: str) -> DedupeRecord | None:
        pk, rk = self._keys(key)
        try:
            entity = self.client.get_entity(pk, rk)
        except ResourceNotFoundError:
            return None
        except (HttpResponseError, ServiceRequestError) as exc:
            raise TransientError(f"Deliveries table: {type(exc).__name__}") from None
        return _from_entity(entity)

    def _create(self, record: DedupeRecord) -> DedupeRecord:
        try:
            meta = self.client.create_entity(_to_entity(record))
        except ResourceExistsError:
            raise Conflict(f"delivery record {record.key!r} exists") from None
        except (HttpResponseError, ServiceRequestError) as exc:
            raise TransientError(f"Deliveries table: {type(exc).__name__}") from None
        return replace(record, etag=meta["etag"])

    def _replace(self, record: DedupeRecord) -> DedupeRecord:
        try:
            meta = self.client.update_entity(_to_entity(record), mode=UpdateMode.REPLACE, etag=record.etag,
                                             match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            raise Conflict(f"delivery record {record.key!r} changed since it was read") from None
        except (HttpResponseError, ServiceRequestError) as exc:
            if getattr(exc, "status_code", None) == 412:
                raise Conflict(f"delivery record {record.key!r} changed since it was read") from None
            raise TransientError(f"Deliveries table: {type(exc).__name__}") from None
        return replace(record, etag=meta["etag"])


def _to_entity(record: DedupeRecord) -> dict:
    pk, rk = TableDedupeStore._keys(record.key)
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
        etag=entity.metadata["etag"])


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)

"""The storage port: a `Table` owns the logic (batching per partition, insert-many with fallback, compare-and-swap
with retry), a backend implements seven primitives (get, insert-if-absent, replace/merge-if-ETag-matches, upsert,
delete, query, submit one transaction). Modelled on AWS Powertools' idempotency utility, whose base persistence layer
owns the logic while each backend implements a handful of record operations.

Backends: `shared/storage/tables.py` (Azure Table Storage, azure-data-tables) and `shared/storage/memory.py`
(in-process, with the same ETags, conflicts, filters, transaction rules and size limits, for tests without Azurite).

Entities are plain mappings with `PartitionKey`, `RowKey` and typed properties (str, int, float, bool, tz-aware
datetime, bytes); `etag_of(entity)` reads the ETag a read returned. Every failure is one of the project's errors
(`shared/domain/errors.py`): `AlreadyExists` / `ETagMismatch` (both `Conflict`), `EntityNotFound` (`NotFound`),
`PayloadTooLarge`, `InvalidInput` (the service rejected the request), `Throttled` / `TransientError` (retry).
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.domain.errors import Conflict, CrmflowError, InvalidInput, NotFound, TransientError
from shared.storage.codec import BATCH_LIMIT

Entity = Mapping[str, Any]


class AlreadyExists(Conflict):
    """An insert found the key taken (the atomic claim lost)."""


class ETagMismatch(Conflict):
    """A conditional write found the entity changed since it was read."""


class EntityNotFound(NotFound):
    """An update of an entity that does not exist."""


class BatchFailed(CrmflowError):
    """A transaction was refused as a whole (nothing of it was written). `cause` is the translated error of the
    failing operation, `index` its position in the transaction."""

    def __init__(self, cause: CrmflowError, index: int = 0):
        super().__init__(f"transaction refused at operation {index}: {cause.message}")
        self.cause = cause
        self.index = index
        self.retryable = cause.retryable


class Op(StrEnum):
    """Operations a transaction may hold."""

    INSERT = "insert"  # insert-if-absent
    UPSERT = "upsert"  # insert or replace
    UPSERT_MERGE = "upsert_merge"  # insert or merge
    REPLACE = "replace"  # update (replace) an existing entity; conditional when an etag is given
    MERGE = "merge"  # update (merge) an existing entity; conditional when an etag is given
    DELETE = "delete"


@dataclass(frozen=True)
class Operation:
    op: Op
    entity: Entity
    etag: str | None = None

    @property
    def partition(self) -> str:
        return self.entity["PartitionKey"]


@dataclass(frozen=True)
class BatchResult:
    """The transactions of a `write_batches` call that were refused, with why (the others were written)."""

    failed: list[tuple[list[Operation], BatchFailed]] = field(default_factory=list)

    def raise_first(self) -> None:
        """Raise the first refused transaction's error (TransientError, InvalidInput, ...), if any."""
        if self.failed:
            error = self.failed[0][1]
            raise error.cause from error


def etag_of(entity: Entity) -> str | None:
    """The ETag of an entity a read returned (None for one built in memory)."""
    metadata = getattr(entity, "metadata", None)
    return metadata.get("etag") if metadata else None


def key_of(entity: Entity) -> tuple[str, str]:
    return entity["PartitionKey"], entity["RowKey"]


class Table(ABC):
    """One table. Subclasses implement the primitives; the logic below is written once on top of them."""

    name: str

    # --- primitives (a backend implements these) -----------------------------------------------------------
    @abstractmethod
    def get(self, partition: str, row: str, select: Sequence[str] | None = None) -> Entity | None:
        """The entity, or None when it does not exist."""

    @abstractmethod
    def insert(self, entity: Entity) -> str:
        """Insert if absent (atomic); AlreadyExists otherwise. Returns the new ETag."""

    @abstractmethod
    def replace(self, entity: Entity, etag: str | None = None) -> str:
        """Replace an existing entity; with `etag`, only if unchanged since (ETagMismatch otherwise)."""

    @abstractmethod
    def merge(self, entity: Entity, etag: str | None = None) -> str:
        """Merge properties into an existing entity; with `etag`, only if unchanged since."""

    @abstractmethod
    def upsert(self, entity: Entity, *, merge: bool = False) -> str:
        """Insert or replace (or merge)."""

    @abstractmethod
    def delete(self, partition: str, row: str, etag: str | None = None) -> None:
        """Delete (a missing entity is not an error); with `etag`, only if unchanged since."""

    @abstractmethod
    def query(self, filter: str | None = None, parameters: Mapping[str, Any] | None = None, *,
              select: Sequence[str] | None = None, page_size: int = 1000) -> Iterator[Entity]:
        """Entities matching an OData filter (`PartitionKey eq @pk and status eq @status`, parameters by name);
        every entity when `filter` is None. Read lazily, page by page."""

    @abstractmethod
    def submit(self, operations: Sequence[Operation]) -> None:
        """One transaction: ≤ BATCH_LIMIT operations of one partition, all or nothing (BatchFailed)."""

    def pages(self, filter: str | None = None, parameters: Mapping[str, Any] | None = None, *,
              select: Sequence[str] | None = None, page_size: int = 1000) -> Iterator[list[Entity]]:
        """`query`'s entities a page (≤ page_size) at a time; a backend that reads page by page yields its pages."""
        entities = self.query(filter, parameters, select=select, page_size=page_size)
        while page := list(itertools.islice(entities, page_size)):
            yield page

    # --- logic -----------------------------------------------------------------------------------------------
    def partition(self, partition: str, *, select: Sequence[str] | None = None,
                  page_size: int = 1000) -> Iterator[Entity]:
        """Every entity of one partition."""
        return self.query("PartitionKey eq @pk", {"pk": partition}, select=select, page_size=page_size)

    def read_ahead(self, partition: str, *, select: Sequence[str] | None = None,
                   page_size: int = 1000) -> ReadAhead:
        """Every entity of one partition, page by page, read in the background from now on, one page ahead of
        the caller (see `ReadAhead`)."""
        return ReadAhead(self.pages("PartitionKey eq @pk", {"pk": partition}, select=select, page_size=page_size))

    def write_batches(self, operations: Iterable[Operation], *, batch_size: int = BATCH_LIMIT,
                      parallel: int = 1) -> BatchResult:
        """Group operations by partition into transactions of ≤ batch_size and submit them all.

        Each transaction is all-or-nothing; a refused one is reported (with its operations) instead of stopping the
        rest. Transactions of different partitions are independent, so up to `parallel` are in flight at once."""
        batches = group_batches(operations, batch_size)
        if parallel <= 1 or len(batches) <= 1:
            outcomes = [self._submit_reporting(batch) for batch in batches]
        else:
            with ThreadPoolExecutor(max_workers=parallel) as pool:
                outcomes = list(pool.map(self._submit_reporting, batches))
        return BatchResult([(batch, error) for batch, error in zip(batches, outcomes, strict=True) if error])

    def _submit_reporting(self, batch: list[Operation]) -> BatchFailed | None:
        try:
            self.submit(batch)
        except BatchFailed as error:
            return error
        return None

    def insert_many(self, entities: Sequence[Entity]) -> list[bool]:
        """Insert each entity if absent, batched per partition; True where this call inserted it.

        A transaction refused because one of its keys exists falls back to single inserts for that transaction, so
        the others are still claimed (another instance or a redelivery got there first for some)."""
        created = [False] * len(entities)
        index_of = {key_of(entity): i for i, entity in enumerate(entities)}
        result = self.write_batches(Operation(Op.INSERT, entity) for entity in entities)
        failed = {key_of(op.entity) for batch, _ in result.failed for op in batch}
        for key, i in index_of.items():
            if key not in failed:
                created[i] = True
        for batch, _ in result.failed:
            for op in batch:
                try:
                    self.insert(op.entity)
                    created[index_of[key_of(op.entity)]] = True
                except AlreadyExists:
                    pass
        return created

    def delete_many(self, keys: Iterable[tuple[str, str]]) -> int:
        """Batched deletes (≤ 100 per transaction, one partition each); returns how many were deleted."""
        operations = [Operation(Op.DELETE, {"PartitionKey": pk, "RowKey": rk}) for pk, rk in keys]
        self.write_batches(operations).raise_first()
        return len(operations)

    def compare_and_swap(self, partition: str, row: str,
                         mutate: Callable[[Entity | None], Mapping[str, Any] | None], *,
                         attempts: int = 20, insert_first: Mapping[str, Any] | None = None,
                         pause: float = 0.002) -> str | None:
        """Apply `mutate` to one entity atomically: read it (None when missing), compute its new properties
        (None = no change), then insert-if-absent or replace-if-ETag-matches; on a lost race read again.

        `insert_first`: the properties to try inserting before any read (saves a round trip where the entity is
        usually new). Returns the new ETag, or None when `mutate` changed nothing. TransientError after `attempts`
        lost races in a row."""
        keys = {"PartitionKey": partition, "RowKey": row}
        if insert_first is not None:
            try:
                return self.insert({**keys, **insert_first})
            except AlreadyExists:
                pass
        for attempt in range(attempts):
            current = self.get(partition, row)
            changed = mutate(current)
            if changed is None:
                return None
            entity = {**keys, **{k: v for k, v in changed.items() if k not in keys}}
            try:
                if current is None:
                    return self.insert(entity)
                return self.replace(entity, etag_of(current))
            except (Conflict, EntityNotFound):
                pass  # another writer changed (or removed) it first: re-read and recompute
            # A jittered pause spreads contenders out instead of letting them collide again.
            time.sleep(random.uniform(0, pause * (attempt + 1)))
        raise TransientError(f"{self.name} row {row!r} is contended; try again")


class ReadAhead:
    """Pages of a read, each fetched in a background thread while the caller works on the one before: the first
    is requested when this is made, the next as soon as a page is handed over. The service answers (and the
    transport waits, without holding the GIL) while this process evaluates, so a read-evaluate loop takes about
    the longer of the two instead of their sum. At most one page is held ahead; a read error is raised where the
    page would have been handed over. Reads only: dropping one unfinished costs at most a page read for nothing."""

    def __init__(self, pages: Iterator[list[Entity]]):
        self._pages = pages
        self._next: Future | None = background().submit(next, pages, None)

    def __iter__(self) -> ReadAhead:
        return self

    def __next__(self) -> list[Entity]:
        pending = self._next
        if pending is None:
            raise StopIteration
        try:
            page = pending.result()
        except BaseException:
            self._next = None
            raise
        if page is None:
            self._next = None
            raise StopIteration
        self._next = background().submit(next, self._pages, None)
        return page

    def entities(self) -> Iterator[Entity]:
        """The entities, flattened."""
        for page in self:
            yield from page

    def close(self) -> None:
        """Stop reading ahead (a page on the way is dropped)."""
        if self._next is not None:
            self._next.cancel()
            self._next = None


_BACKGROUND_THREADS = 8  # reads under way at once: a shard's pages and ledger, and the next shard's
_background: tuple[int, ThreadPoolExecutor] | None = None
_background_lock = threading.Lock()


def background() -> ThreadPoolExecutor:
    """The process's pool for background reads. Tasks on it must never wait for other tasks on it (no nested
    read-ahead), so it cannot run out of threads. Made again in a forked child: a fork copies no threads."""
    global _background
    current = _background
    if current is None or current[0] != os.getpid():
        with _background_lock:
            current = _background
            if current is None or current[0] != os.getpid():
                current = _background = (os.getpid(), ThreadPoolExecutor(_BACKGROUND_THREADS,
                                                                         thread_name_prefix="storage-read"))
    return current[1]


def check_transaction(operations: Sequence[Operation]) -> None:
    """The service's rules for one transaction, checked before sending: 1..100 operations, one PartitionKey, each row
    once (Azurite answers a malformed response to some of these instead of the documented 400)."""
    if not operations:
        raise BatchFailed(InvalidInput("a transaction needs at least one operation"))
    if len(operations) > BATCH_LIMIT:
        raise BatchFailed(InvalidInput(f"a transaction holds at most {BATCH_LIMIT} operations"), BATCH_LIMIT)
    partition = operations[0].partition
    rows: set[str] = set()
    for index, operation in enumerate(operations):
        if operation.partition != partition:
            raise BatchFailed(InvalidInput("a transaction's operations must share one PartitionKey "
                                           "(CommandsInBatchActOnDifferentPartitions)"), index)
        if operation.entity["RowKey"] in rows:
            raise BatchFailed(InvalidInput("a transaction may hold each row once (InvalidDuplicateRow)"), index)
        rows.add(operation.entity["RowKey"])


def group_batches(operations: Iterable[Operation], batch_size: int = BATCH_LIMIT) -> list[list[Operation]]:
    """Operations grouped by partition into lists of ≤ batch_size (full ones first, in arrival order)."""
    by_partition: dict[str, list[Operation]] = defaultdict(list)
    batches: list[list[Operation]] = []
    for operation in operations:
        bucket = by_partition[operation.partition]
        bucket.append(operation)
        if len(bucket) >= batch_size:
            batches.append(list(bucket))
            bucket.clear()
    batches += [bucket for bucket in by_partition.values() if bucket]
    return batches


class Storage(ABC):
    """Hands out the app's tables by DESIGN name (`shared/domain/names.py`)."""

    @abstractmethod
    def table(self, name: str) -> Table: ...

    @abstractmethod
    def ensure_tables(self, names: Sequence[str] | None = None) -> None:
        """Create the app's tables if missing (idempotent; Bicep creates them in Azure)."""

    @abstractmethod
    def delete_table(self, name: str) -> None: ...

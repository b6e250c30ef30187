"""The in-memory storage backend: Table Storage's semantics in one process, for tests without Azurite.

Faithful where the stores depend on it: ETags change on every write, inserts conflict atomically, conditional writes
check ETags, queries return entities sorted by PartitionKey then RowKey and understand the OData filters the stores
use (`shared/storage/odata.py`), transactions are all-or-nothing with at most 100 operations of one partition and no
row twice, and the limits Azure enforces are enforced here (keys without `/ \\ # ?` or control characters and ≤ 1 KiB,
≤ 252 properties, 64 KiB per property, 1 MiB per entity, 4 MiB per transaction). Values are stored as the SDK would
send them: None is dropped, enums become text, datetimes become UTC, ints must fit Int32.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from uuid import UUID

from shared.domain.errors import InvalidInput, NotFound, PayloadTooLarge
from shared.domain.names import TABLES
from shared.storage.backend import (
    AlreadyExists,
    BatchFailed,
    EntityNotFound,
    ETagMismatch,
    Op,
    Operation,
    Storage,
    Table,
    check_transaction,
)
from shared.storage.codec import (
    MAX_BATCH_BYTES,
    MAX_ENTITY_BYTES,
    MAX_KEY_CHARS,
    MAX_PROPERTIES,
    MAX_PROPERTY_BYTES,
    entity_size,
)
from shared.storage.odata import EVERY_KEY, KeyRange, compile_filter, partition_range

_KEYS = ("PartitionKey", "RowKey")


class MemoryEntity(dict):
    """An entity as a read returns it: the properties, and `metadata` with its ETag and timestamp."""

    metadata: dict[str, Any]


class _Row:
    __slots__ = ("etag", "properties", "timestamp")

    def __init__(self, properties: dict[str, Any], etag: str, timestamp: datetime):
        self.properties = properties
        self.etag = etag
        self.timestamp = timestamp


class _Rows:
    """A table's rows by PartitionKey, then RowKey (a mapping keyed by (PartitionKey, RowKey) to its writers), so a
    query of one partition or a range of them reads those rows only, as the service does, not the whole table."""

    __slots__ = ("names", "partitions")

    def __init__(self) -> None:
        self.partitions: dict[str, dict[str, _Row]] = {}
        self.names: list[str] = []  # the partitions' keys, sorted

    def get(self, key: tuple[str, str], default: _Row | None = None) -> _Row | None:
        partition = self.partitions.get(key[0])
        return default if partition is None else partition.get(key[1], default)

    def __contains__(self, key: tuple[str, str]) -> bool:
        partition = self.partitions.get(key[0])
        return partition is not None and key[1] in partition

    def __getitem__(self, key: tuple[str, str]) -> _Row:
        return self.partitions[key[0]][key[1]]

    def __setitem__(self, key: tuple[str, str], row: _Row) -> None:
        partition = self.partitions.get(key[0])
        if partition is None:
            partition = self.partitions[key[0]] = {}
            bisect.insort(self.names, key[0])
        partition[key[1]] = row

    def pop(self, key: tuple[str, str], default: _Row | None = None) -> _Row | None:
        partition = self.partitions.get(key[0])
        if partition is None or key[1] not in partition:
            return default
        row = partition.pop(key[1])
        if not partition:
            del self.partitions[key[0]]
            del self.names[bisect.bisect_left(self.names, key[0])]
        return row

    def in_order(self, keys: KeyRange = EVERY_KEY) -> list[_Row]:
        """The rows of the partitions in `keys`, sorted by PartitionKey then RowKey."""
        if keys.low is not None and keys.low == keys.high:
            names = [keys.low] if keys.low_inclusive and keys.high_inclusive and keys.low in self.partitions else []
        else:
            start = 0 if keys.low is None else (bisect.bisect_left if keys.low_inclusive else bisect.bisect_right)(
                self.names, keys.low)
            stop = len(self.names) if keys.high is None else (
                bisect.bisect_right if keys.high_inclusive else bisect.bisect_left)(self.names, keys.high)
            names = self.names[start:stop]
        found: list[_Row] = []
        for name in names:
            partition = self.partitions[name]
            found.extend(partition[row] for row in sorted(partition))
        return found


_FORBIDDEN_KEY_CHAR = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")  # what the service refuses in a key


def _normalise(entity: Mapping[str, Any]) -> dict[str, Any]:
    """What the service would store for `entity`, or the error it (or the SDK) would raise."""
    properties: dict[str, Any] = {}
    for key in _KEYS:
        value = entity.get(key)
        if not isinstance(value, str):
            raise InvalidInput(f"{key} must be text")
        if len(value) > MAX_KEY_CHARS or _FORBIDDEN_KEY_CHAR.search(value):
            raise InvalidInput(f"{key} {value[:40]!r} is not a valid key (OutOfRangeInput)")
        properties[key] = value
    for name, value in entity.items():
        if name in _KEYS or value is None:
            continue
        if isinstance(value, Enum):
            value = str(value.value)
        elif isinstance(value, bool | str | float | bytes | UUID):
            pass
        elif isinstance(value, int):
            if value >= 2**31 or value < -(2**31):
                raise TypeError(f"value {value} is too large to be cast to type Edm.Int32")  # as the SDK does
        elif isinstance(value, datetime):
            value = value.astimezone(UTC)
        else:
            raise TypeError(f"type not supported when sending data to the service: {type(value)}")
        if isinstance(value, str) and len(value.encode("utf-16-le")) > MAX_PROPERTY_BYTES:
            raise PayloadTooLarge(f"property {name!r} is over 64 KiB (PropertyValueTooLarge)")
        if isinstance(value, bytes) and len(value) > MAX_PROPERTY_BYTES:
            raise PayloadTooLarge(f"property {name!r} is over 64 KiB (PropertyValueTooLarge)")
        properties[name] = value
    if len(properties) - len(_KEYS) > MAX_PROPERTIES:
        raise InvalidInput(f"entity has more than {MAX_PROPERTIES} properties (TooManyProperties)")
    if entity_size(properties) > MAX_ENTITY_BYTES:
        raise PayloadTooLarge("entity is over 1 MiB (EntityTooLarge)")
    return properties


_NO_ROWS = _Rows()


class MemoryTable(Table):
    """One table held in a dict; every operation takes the storage's lock, so each is atomic."""

    def __init__(self, storage: MemoryStorage, name: str):
        self.storage = storage
        self.name = name

    # --- internals -----------------------------------------------------------------------------------------
    @property
    def _rows(self) -> _Rows:
        rows = self.storage._tables.get(self.name)
        if rows is None:
            raise NotFound(f"table {self.name} does not exist (TableNotFound)")
        return rows

    def _stamp(self, properties: dict[str, Any]) -> _Row:
        return _Row(properties, f'W/"{next(self.storage._versions)}"', datetime.now(UTC))

    @staticmethod
    def _read(row: _Row, select: Sequence[str] | None) -> MemoryEntity:
        if select is None:
            found = MemoryEntity(row.properties)
        else:
            found = MemoryEntity((name, row.properties[name]) for name in select if name in row.properties)
        found.metadata = {"etag": row.etag, "timestamp": row.timestamp}
        return found

    def _apply(self, rows: _Rows | dict[tuple[str, str], _Row], operation: Operation) -> str | None:
        """One write against `rows` (the table, or a transaction's copy of it)."""
        op, etag = operation.op, operation.etag
        if op is Op.DELETE:
            key = (operation.entity["PartitionKey"], operation.entity["RowKey"])
            current = rows.get(key)
            if current is not None and etag is not None and current.etag != etag:
                raise ETagMismatch(f"{self.name} {key[1]!r} changed since it was read (UpdateConditionNotSatisfied)")
            rows.pop(key, None)
            return None
        properties = _normalise(operation.entity)
        key = (properties["PartitionKey"], properties["RowKey"])
        current = rows.get(key)
        if op is Op.INSERT:
            if current is not None:
                raise AlreadyExists(f"{self.name} {key[1]!r} exists (EntityAlreadyExists)")
        elif op in (Op.REPLACE, Op.MERGE):
            if current is None:
                raise EntityNotFound(f"{self.name} {key[1]!r} does not exist (ResourceNotFound)")
            if etag is not None and current.etag != etag:
                raise ETagMismatch(f"{self.name} {key[1]!r} changed since it was read (UpdateConditionNotSatisfied)")
        if op in (Op.MERGE, Op.UPSERT_MERGE) and current is not None:
            properties = {**current.properties, **properties}
            if entity_size(properties) > MAX_ENTITY_BYTES:
                raise PayloadTooLarge("entity is over 1 MiB (EntityTooLarge)")
            if len(properties) - len(_KEYS) > MAX_PROPERTIES:
                raise InvalidInput(f"entity has more than {MAX_PROPERTIES} properties (TooManyProperties)")
        row = rows[key] = self._stamp(properties)
        return row.etag

    def _write(self, operation: Operation) -> str:
        with self.storage._lock:
            etag = self._apply(self._rows, operation)
        assert etag is not None
        return etag

    # --- primitives ----------------------------------------------------------------------------------------
    def get(self, partition: str, row: str, select: Sequence[str] | None = None) -> MemoryEntity | None:
        with self.storage._lock:
            found = self.storage._tables.get(self.name, _NO_ROWS).get((partition, row))
            return None if found is None else self._read(found, select)

    def insert(self, entity: Mapping[str, Any]) -> str:
        return self._write(Operation(Op.INSERT, entity))

    def replace(self, entity: Mapping[str, Any], etag: str | None = None) -> str:
        return self._write(Operation(Op.REPLACE, entity, etag))

    def merge(self, entity: Mapping[str, Any], etag: str | None = None) -> str:
        return self._write(Operation(Op.MERGE, entity, etag))

    def upsert(self, entity: Mapping[str, Any], *, merge: bool = False) -> str:
        return self._write(Operation(Op.UPSERT_MERGE if merge else Op.UPSERT, entity))

    def delete(self, partition: str, row: str, etag: str | None = None) -> None:
        with self.storage._lock:
            self._apply(self._rows, Operation(Op.DELETE, {"PartitionKey": partition, "RowKey": row}, etag))

    def query(self, filter: str | None = None, parameters: Mapping[str, Any] | None = None, *,
              select: Sequence[str] | None = None, page_size: int = 1000) -> Iterator[MemoryEntity]:
        predicate = compile_filter(filter, parameters) if filter else None
        if not 1 <= page_size <= 1000:
            raise InvalidInput("results per page must be between 1 and 1000")
        keys = partition_range(filter, parameters) if filter else EVERY_KEY
        with self.storage._lock:
            rows = self._rows.in_order(keys)  # a snapshot: writes during iteration are not seen, like paging
        return (self._read(row, select) for row in rows if predicate is None or predicate(row.properties))

    def submit(self, operations: Sequence[Operation]) -> None:
        check_transaction(operations)
        partition = operations[0].partition
        size = sum(entity_size(operation.entity) for operation in operations)
        if size > MAX_BATCH_BYTES:
            raise BatchFailed(PayloadTooLarge("a transaction's payload is over 4 MiB (RequestBodyTooLarge)"))
        with self.storage._lock:
            rows = self._rows
            staged: list[tuple[tuple[str, str], _Row | None]] = []
            for index, operation in enumerate(operations):
                # Each row appears once, so the operations are independent: stage each on its own row.
                key = (partition, operation.entity["RowKey"])
                one = {key: rows[key]} if key in rows else {}
                try:
                    self._apply(one, operation)
                except (InvalidInput, PayloadTooLarge, AlreadyExists, ETagMismatch, EntityNotFound) as error:
                    raise BatchFailed(error, index) from None
                except TypeError as error:
                    raise BatchFailed(InvalidInput(str(error)), index) from None
                staged.append((key, one.get(key)))
            for key, row in staged:  # all succeeded: commit
                if row is None:
                    rows.pop(key, None)
                else:
                    rows[key] = row


class MemoryStorage(Storage):
    """Tables in this process (the app's TABLES exist from the start). Thread-safe; not shared across processes."""

    def __init__(self, tables: Sequence[str] = TABLES):
        self._lock = threading.RLock()
        self._versions = itertools.count(1)
        self._tables: dict[str, _Rows] = {name: _Rows() for name in tables}
        self._handles: dict[str, MemoryTable] = {}

    def table(self, name: str) -> MemoryTable:
        handle = self._handles.get(name)
        if handle is None:
            handle = self._handles[name] = MemoryTable(self, name)
        return handle

    def ensure_tables(self, names: Sequence[str] | None = None) -> None:
        with self._lock:
            for name in names or TABLES:
                self._tables.setdefault(name, _Rows())

    def delete_table(self, name: str) -> None:
        with self._lock:
            self._tables.pop(name, None)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every table's entities (copies), for test assertions."""
        with self._lock:
            return {name: [copy.copy(row.properties) for row in rows.in_order()]
                    for name, rows in self._tables.items()}

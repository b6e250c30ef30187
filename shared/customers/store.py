"""Customers in Table Storage.

Layout: PartitionKey = shard ("s0000".."s{N-1}", a stable hash of the customer id, so a sweep can hand one shard to
each worker and shards stay even); RowKey = customer id. Scalar fields are typed columns (dates as ISO text) so
ops can read them in Storage Explorer; nested fields (owner, purchases, deals, ...) are JSON text, split into
`<field>_json`, `<field>_json_1`, ... when longer than one string property may hold. Writes are batched per
partition (≤ 100 per transaction, all or nothing) and single writes use ETags for optimistic concurrency.
Storage primitives (keys, chunking, batching, ETags) are `shared/storage/`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import msgspec

from shared.customers.canonical import customer_from_mapping
from shared.domain.errors import Conflict, InvalidInput, Location, NotFound, PayloadTooLarge
from shared.domain.model import Customer
from shared.domain.names import CUSTOMERS
from shared.storage.backend import AlreadyExists, Entity, Op, Operation, ReadAhead, Storage, Table, etag_of
from shared.storage.codec import BATCH_LIMIT, MAX_ENTITY_BYTES, MAX_STRING_CHARS, entity_size, join_text, put_json
from shared.storage.keys import readable_key, shard_of, shard_partition

__all__ = ["BATCH_LIMIT", "MAX_STRING_CHARS", "BatchFailure", "CustomerStore", "StoredCustomer", "customer_to_entity",
           "entity_size", "entity_to_customer", "partition_key", "shard_of"]

NESTED_FIELDS = ("owner", "manager", "products", "purchases", "usage", "deals", "custom")
SCALAR_FIELDS = tuple(
    name for name in Customer.__dataclass_fields__ if name not in NESTED_FIELDS and name != "id")
partition_key = shard_partition
_STORED = Location(file=CUSTOMERS, field=None)
_NESTED_COLUMNS = tuple((name, f"{name}_json", f"{name}_json_1") for name in NESTED_FIELDS)
_decode_json = msgspec.json.Decoder().decode  # nested fields are JSON this module wrote: decoded in C


def customer_to_entity(customer: Customer, shards: int) -> dict:
    data = customer.to_dict()
    entity: dict = {"PartitionKey": shard_partition(shard_of(customer.id, shards)), "RowKey": readable_key(customer.id)}
    for name in SCALAR_FIELDS:
        value = data[name]
        if value is not None:
            entity[name] = value
    for name in NESTED_FIELDS:
        entity.update(put_json(f"{name}_json", data[name] or None))
    size = entity_size(entity)
    if size > MAX_ENTITY_BYTES:
        raise PayloadTooLarge(f"customer {customer.id} is {size:,} bytes in Table Storage; the limit is 1 MiB "
                              "(trim purchases or deals)")
    return entity


def entity_to_customer(entity: dict) -> Customer:
    data: dict = {"id": entity["RowKey"]}
    for name in SCALAR_FIELDS:
        if name in entity:
            data[name] = entity[name]
    for name, column, second in _NESTED_COLUMNS:
        text = entity.get(column)
        if text:
            if second in entity:  # split over several properties
                text = join_text(entity, column)
            data[name] = _decode_json(text)
    return customer_from_mapping(data, _STORED)


@dataclass(frozen=True)
class StoredCustomer:
    customer: Customer
    etag: str


@dataclass(frozen=True)
class BatchFailure:
    customer_ids: tuple[str, ...]
    reason: str


class CustomerStore:
    """The `Customers` table."""

    def __init__(self, storage: Storage, shards: int):
        self.storage = storage
        self.shards = shards

    @property
    def table(self) -> Table:
        return self.storage.table(CUSTOMERS)

    def shard_keys(self) -> list[str]:
        return [shard_partition(shard) for shard in range(self.shards)]

    def _keys(self, customer_id: str) -> tuple[str, str]:
        return shard_partition(shard_of(customer_id, self.shards)), readable_key(customer_id)

    # --- writes --------------------------------------------------------------------------------------------
    def upsert_many(self, customers: Iterable[Customer], batch_size: int = BATCH_LIMIT,
                    parallel: int = 4) -> list[BatchFailure]:
        """Replace-or-insert customers in transactions of ≤ batch_size per partition.

        A transaction is all-or-nothing, so a failure never leaves a customer half-written; failed batches are
        returned (with the reason) instead of stopping the rest. Transactions of different partitions are
        independent, so up to `parallel` are in flight at once (the service works while we serialise the next).
        """
        operations = (Operation(Op.UPSERT, customer_to_entity(customer, self.shards)) for customer in customers)
        result = self.table.write_batches(operations, batch_size=batch_size, parallel=parallel)
        return [BatchFailure(tuple(op.entity["RowKey"] for op in batch), error.cause.message)
                for batch, error in result.failed]

    def upsert_one(self, customer: Customer) -> None:
        """Unbatched replace-or-insert (the baseline the import benchmark compares against)."""
        self.table.upsert(customer_to_entity(customer, self.shards))

    def put(self, customer: Customer, etag: str | None) -> str:
        """Write one customer: insert when etag is None, else replace only if unchanged since read.

        Raises Conflict when another writer got there first (re-read, merge and try again).
        """
        entity = customer_to_entity(customer, self.shards)
        try:
            if etag is None:
                return self.table.insert(entity)
            return self.table.replace(entity, etag)
        except AlreadyExists:
            raise Conflict(f"customer {customer.id} already exists") from None
        except (Conflict, NotFound):
            raise Conflict(f"customer {customer.id} changed since it was read") from None

    def delete(self, customer_id: str) -> None:
        self.table.delete(*self._keys(customer_id))

    # --- reads ---------------------------------------------------------------------------------------------
    def get(self, customer_id: str) -> StoredCustomer | None:
        entity = self.table.get(*self._keys(customer_id))
        if entity is None:
            return None
        return StoredCustomer(entity_to_customer(entity), etag_of(entity))

    def read_shard(self, shard: int, page_size: int = 1000) -> ReadAhead:
        """Start reading one shard now: its pages are fetched in the background, one ahead of the caller (hand
        them to `iter_shard`)."""
        return self.table.read_ahead(shard_partition(shard), page_size=page_size)

    def iter_shard(self, shard: int, page_size: int = 1000,
                   on_invalid: Callable[[str, str], None] | None = None,
                   pages: Iterable[list[Entity]] | None = None) -> Iterator[Customer]:
        """Every customer of one shard, read page by page (one request per `page_size` rows), the next page
        requested while the caller works on this one; `pages`: a read `read_shard` started earlier.

        A stored row that is no longer a valid customer (written before a limit existed, or by hand) is passed
        to `on_invalid(customer_id, reason)` and skipped, so it cannot stop the shard; without a callback it
        raises InvalidInput. The reason names the field, never its value (safe to log)."""
        if pages is None:
            pages = self.read_shard(shard, page_size)
        for page in pages:
            for entity in page:
                try:
                    customer = entity_to_customer(entity)
                except (InvalidInput, ValueError) as exc:
                    if on_invalid is None:
                        raise
                    field = exc.location.field if isinstance(exc, InvalidInput) else None
                    on_invalid(str(entity.get("RowKey")), f"{type(exc).__name__}{f' at {field}' if field else ''}")
                    continue
                yield customer

    def iter_all(self, page_size: int = 1000) -> Iterator[Customer]:
        for shard in range(self.shards):
            yield from self.iter_shard(shard, page_size)

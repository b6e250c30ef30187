"""Customers in Table Storage.

Layout: PartitionKey = shard ("s0000".."s{N-1}", a stable hash of the customer id, so a sweep can hand one shard to
each worker and shards stay even); RowKey = customer id. Scalar fields are typed columns (dates as ISO text) so
ops can read them in Storage Explorer; nested fields (owner, purchases, deals, ...) are JSON text, split into
`<field>_json`, `<field>_json_1`, ... when longer than one string property may hold. Writes are batched per
partition (≤ 100 per transaction, all or nothing) and single writes use ETags for optimistic concurrency.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TransactionOperation, UpdateMode

from shared.domain.errors import Conflict, InvalidInput, Location, PayloadTooLarge, TransientError
from shared.domain.model import Customer
from shared.domain.names import CUSTOMERS
from shared.storage.tables import TableAccess

BATCH_LIMIT = 100  # entities per transaction (one partition)
MAX_ENTITY_BYTES = 1024 * 1024  # Table Storage entity limit
MAX_STRING_CHARS = 32 * 1024  # 64 KiB per string property, stored as UTF-16
NESTED_FIELDS = ("owner", "manager", "products", "purchases", "usage", "deals", "custom")
SCALAR_FIELDS = tuple(
    name for name in Customer.__dataclass_fields__ if name not in NESTED_FIELDS and name != "id")


def shard_of(customer_id: str, shards: int) -> int:
    """Stable shard number for a customer id (same on every machine and Python version)."""
    digest = hashlib.blake2b(customer_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def partition_key(shard: int) -> str:
    return f"s{shard:04d}"


def entity_size(entity: dict) -> int:
    """Bytes an entity takes against the 1 MiB limit, per the Table service's documented formula."""
    size = 4
    for key, value in entity.items():
        if key in ("PartitionKey", "RowKey"):
            size += len(value) * 2
            continue
        size += 8 + len(key) * 2
        if isinstance(value, str):
            size += 4 + len(value) * 2
        elif isinstance(value, bool):
            size += 1
        else:
            size += 8
    return size


def customer_to_entity(customer: Customer, shards: int) -> dict:
    data = customer.to_dict()
    entity: dict = {"PartitionKey": partition_key(shard_of(customer.id, shards)), "RowKey": customer.id}
    for name in SCALAR_FIELDS:
        value = data[name]
        if value is not None:
            entity[name] = value
    for name in NESTED_FIELDS:
        value = data[name]
        if not value:
            continue
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        for index in range(0, len(text), MAX_STRING_CHARS):
            suffix = "" if index == 0 else f"_{index // MAX_STRING_CHARS}"
            entity[f"{name}_json{suffix}"] = text[index:index + MAX_STRING_CHARS]
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
    for name in NESTED_FIELDS:
        first = entity.get(f"{name}_json")
        if first is None:
            continue
        parts = [first]
        index = 1
        while (part := entity.get(f"{name}_json_{index}")) is not None:
            parts.append(part)
            index += 1
        data[name] = json.loads("".join(parts))
    return Customer.from_dict(data, Location(file=CUSTOMERS, field=None))


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

    def __init__(self, tables: TableAccess, shards: int):
        self.tables = tables
        self.shards = shards

    @property
    def client(self) -> TableClient:
        return self.tables.table(CUSTOMERS)

    def shard_keys(self) -> list[str]:
        return [partition_key(shard) for shard in range(self.shards)]

    # --- writes --------------------------------------------------------------------------------------------
    def upsert_many(self, customers: Iterable[Customer], batch_size: int = BATCH_LIMIT,
                    parallel: int = 4) -> list[BatchFailure]:
        """Replace-or-insert customers in transactions of ≤ batch_size per partition.

        A transaction is all-or-nothing, so a failure never leaves a customer half-written; failed batches are
        returned (with the reason) instead of stopping the rest. Transactions of different partitions are
        independent, so up to `parallel` are in flight at once (the service works while we serialise the next).
        """
        by_partition: dict[str, list[dict]] = defaultdict(list)
        batches: list[list[dict]] = []
        for customer in customers:
            entity = customer_to_entity(customer, self.shards)
            bucket = by_partition[entity["PartitionKey"]]
            bucket.append(entity)
            if len(bucket) >= batch_size:
                batches.append(list(bucket))
                bucket.clear()
        batches += [bucket for bucket in by_partition.values() if bucket]
        if parallel <= 1 or len(batches) <= 1:
            return [failure for batch in batches for failure in self._submit(batch)]
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            return [failure for failures in pool.map(self._submit, batches) for failure in failures]

    def _submit(self, entities: list[dict]) -> list[BatchFailure]:
        operations = [(TransactionOperation.UPSERT, entity, {"mode": UpdateMode.REPLACE}) for entity in entities]
        try:
            self.client.submit_transaction(operations)
        except HttpResponseError as exc:
            ids = tuple(entity["RowKey"] for entity in entities)
            return [BatchFailure(ids, _reason(exc))]
        return []

    def upsert_one(self, customer: Customer) -> None:
        """Unbatched replace-or-insert (the baseline the import benchmark compares against)."""
        self.client.upsert_entity(customer_to_entity(customer, self.shards), mode=UpdateMode.REPLACE)

    def put(self, customer: Customer, etag: str | None) -> str:
        """Write one customer: insert when etag is None, else replace only if unchanged since read.

        Raises Conflict when another writer got there first (re-read, merge and try again).
        """
        entity = customer_to_entity(customer, self.shards)
        try:
            if etag is None:
                meta = self.client.create_entity(entity)
            else:
                meta = self.client.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified)
        except ResourceExistsError:
            raise Conflict(f"customer {customer.id} already exists") from None
        except (ResourceModifiedError, ResourceNotFoundError):
            raise Conflict(f"customer {customer.id} changed since it was read") from None
        except HttpResponseError as exc:
            raise _translate(exc) from None
        return meta["etag"]

    def delete(self, customer_id: str) -> None:
        self.client.delete_entity(partition_key(shard_of(customer_id, self.shards)), customer_id)

    # --- reads ---------------------------------------------------------------------------------------------
    def get(self, customer_id: str) -> StoredCustomer | None:
        try:
            entity = self.client.get_entity(partition_key(shard_of(customer_id, self.shards)), customer_id)
        except ResourceNotFoundError:
            return None
        return StoredCustomer(entity_to_customer(entity), entity.metadata["etag"])

    def iter_shard(self, shard: int, page_size: int = 1000) -> Iterator[Customer]:
        """Every customer of one shard, read page by page (one request per `page_size` rows)."""
        pages = self.client.query_entities(
            "PartitionKey eq @pk", parameters={"pk": partition_key(shard)}, results_per_page=page_size)
        for entity in pages:
            yield entity_to_customer(entity)

    def iter_all(self, page_size: int = 1000) -> Iterator[Customer]:
        for shard in range(self.shards):
            yield from self.iter_shard(shard, page_size)


def _reason(exc: HttpResponseError) -> str:
    code = getattr(exc, "error_code", None) or getattr(exc, "status_code", None)
    message = str(getattr(exc, "message", exc)).splitlines()[0][:200]
    return f"{code}: {message}" if code else message


def _translate(exc: HttpResponseError) -> Exception:
    status = getattr(exc, "status_code", None) or 0
    if status >= 500 or status in (408, 429):
        return TransientError(f"Table Storage: {_reason(exc)}")
    return InvalidInput(f"Table Storage rejected the write: {_reason(exc)}")

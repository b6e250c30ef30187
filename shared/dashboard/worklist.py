"""The dashboard's work list: open opportunities by owner, a query instead of a ledger scan.

`WorkItems` holds one row per open opportunity (detected, queued, notified, in progress, waiting for approval):
PartitionKey = the owner's key (a hash of the rep's address, so no address appears in a URL or on the page),
RowKey = due date + the ledger id, so one owner's list comes back due-first from a single partition query. The rows
are derived data: the snapshot refresh rewrites only the rows whose content changed and deletes those whose
opportunity closed; an outcome a rep records on the page updates or removes its row at once (`apply`).

Customer names and CRM links are copied in so a page needs no per-row customer reads; customer e-mail addresses are
never stored here.

Heads: the refresh also stores, per owner and for the team view, the first `HEAD_SIZE` rows of that list in the order
a query returns them, as one row of the `Dashboard` table (partition `worklist`, the JSON split over string columns).
A page is then one point read instead of a query: Table queries cost with the table's size on Azurite, which scans
the whole table for every page, and a point read is what the service serves fastest anywhere. A head that holds its
whole list (`complete`) answers every filter and page of it; one that does not answers the pages inside it, and
anything past it (or any filter it cannot answer) is the query as before. An outcome recorded on the page updates its
row in both heads at once, so the list shows it without a refresh.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from shared.domain.errors import InvalidInput, Location
from shared.domain.names import DASHBOARD, WORK_ITEMS
from shared.opportunities.ledger import (
    DETECTED,
    IN_PROGRESS,
    NEEDS_APPROVAL,
    NOTIFIED,
    QUEUED,
    Opportunity,
    row_key,
)
from shared.storage.backend import EntityNotFound, Op, Operation, Storage, Table
from shared.storage.codec import BATCH_LIMIT, MAX_ENTITY_BYTES, MAX_PROPERTIES, entity_size, get_json, put_json

OPEN_STATUSES = (DETECTED, QUEUED, NOTIFIED, IN_PROGRESS, NEEDS_APPROVAL)
FILTER_STATUSES = OPEN_STATUSES  # what the status filter offers
UNASSIGNED = "unassigned"
NO_DUE = "9999-12-31"
MAX_PAGE = 100
HEADS_PARTITION = "worklist"  # in the Dashboard table
TEAM = "~team"  # the head of the team view (every owner's rows, in (owner, due) order like the table query)
HEAD_SIZE = MAX_PAGE + 1  # the largest page and one more, to know there is a next page
_COLUMNS = ("opportunity_id", "rule", "kind", "status", "customer_id", "customer_name", "crm_url", "owner_name",
            "recommendation", "detected", "due", "amount")


def owner_key(owner_email: str | None) -> str:
    """The work list's partition for a rep: stable, URL-safe, and not the address itself."""
    if not owner_email:
        return UNASSIGNED
    return "o" + hashlib.blake2b(owner_email.strip().lower().encode("utf-8"), digest_size=8).hexdigest()


def due_date(local_date: str | None, due_days: int | None) -> str | None:
    """The rep's due date: the firing's local date plus the rule's `due_in_days` (None: no due date)."""
    if not local_date or due_days is None:
        return None
    try:
        return (date.fromisoformat(local_date) + timedelta(days=due_days)).isoformat()
    except ValueError:
        return None


@dataclass(frozen=True)
class WorkItem:
    """One row of the work list, as the page shows it (no e-mail addresses)."""

    owner: str
    opportunity_id: str
    rule: str
    kind: str
    status: str
    customer_id: str
    customer_name: str | None
    crm_url: str | None
    owner_name: str | None
    recommendation: str | None
    detected: str | None
    due: str | None
    amount: float | None = None

    @property
    def row(self) -> str:
        return row_key(f"{self.due or NO_DUE}~{self.opportunity_id}")

    def entity(self) -> dict[str, Any]:
        entity = {"PartitionKey": self.owner, "RowKey": self.row}
        for name in _COLUMNS:
            value = getattr(self, name)
            if value is not None:
                entity[name] = value
        entity["signature"] = self.signature()
        return entity

    def signature(self) -> str:
        """A digest of the content: the refresh rewrites a row only when it changed."""
        text = json.dumps([getattr(self, name) for name in _COLUMNS], ensure_ascii=False, default=str)
        return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {"owner": self.owner, **{name: getattr(self, name) for name in _COLUMNS}}

    @classmethod
    def from_entity(cls, row: Mapping[str, Any]) -> WorkItem:
        return cls(owner=row["PartitionKey"], **{name: row.get(name) for name in _COLUMNS})


@dataclass(frozen=True)
class WorkPage:
    items: tuple[WorkItem, ...]
    next_cursor: str | None


class WorkList:
    def __init__(self, storage: Storage):
        self.storage = storage

    @property
    def table(self) -> Table:
        return self.storage.table(WORK_ITEMS)

    @property
    def heads(self) -> Table:
        return self.storage.table(DASHBOARD)

    def page(self, *, owner: str | None = None, kind: str | None = None, status: str | None = None,
             size: int = 25, cursor: str | None = None) -> WorkPage:
        """One page of the list: a point read of the head when it holds the page, else a single query (one
        partition when `owner` is given); `cursor` continues it."""
        if status is not None and status not in FILTER_STATUSES:
            raise InvalidInput(f"unknown status {status!r}; one of {', '.join(FILTER_STATUSES)}",
                               Location(field="status"))
        if not 1 <= size <= MAX_PAGE:
            raise InvalidInput(f"page size must be between 1 and {MAX_PAGE}", Location(field="size"))
        after = _decode(cursor)
        head = self.head(owner or TEAM)
        if head is not None:
            served = head.serve(kind, status, size, after)
            if served is not None:
                return served
        return self._query(owner, kind, status, size, after)

    def _query(self, owner: str | None, kind: str | None, status: str | None, size: int,
               after: tuple[str, str] | None) -> WorkPage:
        clauses, parameters = [], {}
        if owner:
            clauses.append("PartitionKey eq @owner")
            parameters["owner"] = owner
        if kind:
            clauses.append("kind eq @kind")
            parameters["kind"] = kind
        if status:
            clauses.append("status eq @status")
            parameters["status"] = status
        if after:  # rows come in (PartitionKey, RowKey) order: continue after the last one shown
            clauses.append("( PartitionKey gt @after_pk or ( PartitionKey eq @after_pk and RowKey gt @after_rk ) )")
            parameters.update(after_pk=after[0], after_rk=after[1])
        # Only open opportunities have rows, so the unfiltered team view is a plain first page of the table.
        rows = self.table.query(" and ".join(clauses) if clauses else None, parameters, page_size=size + 1)
        items: list[WorkItem] = []
        for row in rows:
            items.append(WorkItem.from_entity(row))
            if len(items) > size:  # one more than shown: there is a next page
                break
        return _page(items, size)

    def head(self, key: str) -> Head | None:
        """The stored head of one owner's list (`TEAM`: the team view's), or None."""
        row = self.heads.get(HEADS_PARTITION, key)
        return None if row is None else Head.from_entity(row)

    def head_signatures(self) -> dict[str, str]:
        """Key → signature of every stored head (what the refresh compares against)."""
        rows = self.heads.partition(HEADS_PARTITION, select=["RowKey", "signature"])
        return {row["RowKey"]: row.get("signature") or "" for row in rows}

    def write_heads(self, heads: Mapping[str, Head]) -> int:
        """Store the heads that changed and drop those of owners with no open rows left; returns rows written."""
        stored = self.head_signatures()
        written = 0
        for key, head in heads.items():
            entity = head.entity(key)
            if stored.pop(key, None) != entity["signature"]:
                self.heads.upsert(entity)
                written += 1
        for key in stored:
            self.heads.delete(HEADS_PARTITION, key)
        return written + len(stored)

    def existing(self) -> dict[tuple[str, str], str]:
        """(PartitionKey, RowKey) → signature of every row: what the refresh compares against."""
        rows = self.table.query(select=["PartitionKey", "RowKey", "signature"])
        return {(row["PartitionKey"], row["RowKey"]): row.get("signature") or "" for row in rows}

    def upsert(self, items: Iterable[WorkItem]) -> int:
        """Write rows in transactions of ≤ 100 per owner; returns the number of transactions."""
        return self._submit(Operation(Op.UPSERT, item.entity()) for item in items)

    def delete(self, keys: Iterable[tuple[str, str]]) -> int:
        return self._submit(Operation(Op.DELETE, {"PartitionKey": pk, "RowKey": rk}) for pk, rk in keys)

    def _submit(self, operations: Iterable[Operation]) -> int:
        by_partition: dict[str, list[Operation]] = {}
        for operation in operations:
            by_partition.setdefault(operation.partition, []).append(operation)
        transactions = 0
        for pending in by_partition.values():
            for start in range(0, len(pending), BATCH_LIMIT):
                self.table.submit(pending[start:start + BATCH_LIMIT])
                transactions += 1
        return transactions

    def apply(self, opportunity: Opportunity, due: str | None) -> None:
        """An outcome recorded on the page shows at once: a closed opportunity leaves the list, an open one moves."""
        keys = {"PartitionKey": owner_key(opportunity.owner_email),
                "RowKey": row_key(f"{due or NO_DUE}~{opportunity.id}")}
        if opportunity.status not in OPEN_STATUSES:
            self.table.delete(keys["PartitionKey"], keys["RowKey"])  # a missing row is no error
            self._apply_to_heads(opportunity, None)
            return
        entity: dict[str, Any] = {**keys, "status": opportunity.status}
        if opportunity.amount is not None:
            entity["amount"] = float(opportunity.amount)
        # Not listed yet (planned after the last refresh): the next refresh lists it with its status.
        with contextlib.suppress(EntityNotFound):
            self.table.merge(entity)
        self._apply_to_heads(opportunity, entity)

    def _apply_to_heads(self, opportunity: Opportunity, changes: Mapping[str, Any] | None) -> None:
        """The same change in the rep's head and the team's (None: the row left the list)."""
        for key in (owner_key(opportunity.owner_email), TEAM):
            def mutate(row: Mapping[str, Any] | None, key: str = key) -> dict[str, Any] | None:
                if row is None:
                    return None
                head = Head.from_entity(row)
                items = list(head.items)
                index = next((i for i, item in enumerate(items) if item.opportunity_id == opportunity.id), None)
                if index is None:
                    return None
                if changes is None:
                    del items[index]
                else:
                    values = {name: changes[name] for name in ("status", "amount") if name in changes}
                    items[index] = WorkItem(**{**items[index].to_dict(), **values})
                return Head(tuple(items), head.complete).entity(key)

            self.heads.compare_and_swap(HEADS_PARTITION, key, mutate)

    def iter_all(self) -> Iterator[WorkItem]:
        for row in self.table.query():
            yield WorkItem.from_entity(row)


@dataclass(frozen=True)
class Head:
    """The first rows of one list in query order; `complete`: they are the whole list."""

    items: tuple[WorkItem, ...]
    complete: bool

    def serve(self, kind: str | None, status: str | None, size: int,
              after: tuple[str, str] | None) -> WorkPage | None:
        """The page the query would return, when this head holds it (None: ask the table)."""
        items = [item for item in self.items if (kind is None or item.kind == kind)
                 and (status is None or item.status == status) and (after is None or (item.owner, item.row) > after)]
        if len(items) > size or self.complete:
            return _page(items[:size + 1], size)
        return None

    def entity(self, key: str) -> dict[str, Any]:
        """The head's row; items past what one entity can hold are left to the query."""
        items, complete = list(self.items), self.complete
        while True:
            entity = {"PartitionKey": HEADS_PARTITION, "RowKey": key, "complete": complete,
                      **put_json("items", [item.to_dict() for item in items])}
            if (entity_size(entity) + 100 <= MAX_ENTITY_BYTES and len(entity) < MAX_PROPERTIES) or not items:
                break
            items, complete = items[:len(items) // 2], False
        text = json.dumps([complete, [item.to_dict() for item in items]], ensure_ascii=False, default=str)
        entity["signature"] = hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()
        return entity

    @classmethod
    def from_entity(cls, row: Mapping[str, Any]) -> Head:
        return cls(tuple(WorkItem(**item) for item in get_json(row, "items", [])), bool(row.get("complete")))


class HeadBuilder:
    """Collects the heads while the refresh walks the ledger: per owner and for the team, the first HEAD_SIZE rows
    in query order, in memory bounded by a few heads per owner however long the lists are."""

    def __init__(self) -> None:
        self._kept: dict[str, list[tuple[tuple[str, str], WorkItem]]] = {}
        self._seen: dict[str, int] = {}

    def add(self, item: WorkItem) -> None:
        order = (item.owner, item.row)
        for key in (item.owner, TEAM):
            kept = self._kept.setdefault(key, [])
            kept.append((order, item))
            self._seen[key] = self._seen.get(key, 0) + 1
            if len(kept) >= 4 * HEAD_SIZE:
                kept.sort(key=_order)
                del kept[HEAD_SIZE:]

    def heads(self) -> dict[str, Head]:
        heads = {}
        for key, kept in self._kept.items():
            kept.sort(key=_order)
            heads[key] = Head(tuple(item for _, item in kept[:HEAD_SIZE]), self._seen[key] <= HEAD_SIZE)
        return heads


def _order(entry: tuple[tuple[str, str], WorkItem]) -> tuple[str, str]:
    return entry[0]


def _page(items: Sequence[WorkItem], size: int) -> WorkPage:
    """`items` holds up to size + 1 rows: one more than shown means there is a next page."""
    last = items[size - 1] if len(items) > size else None
    return WorkPage(tuple(items[:size]), _encode([last.owner, last.row] if last else None))


def _encode(token: list[str] | None) -> str | None:
    if not token:
        return None
    return base64.urlsafe_b64encode(json.dumps(token, ensure_ascii=False).encode()).decode().rstrip("=")


def _decode(cursor: str | None) -> tuple[str, str] | None:
    if not cursor:
        return None
    try:
        token = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, UnicodeError):
        raise InvalidInput("page cursor is malformed", Location(field="cursor")) from None
    if not (isinstance(token, list) and len(token) == 2 and all(isinstance(part, str) for part in token)):
        raise InvalidInput("page cursor is malformed", Location(field="cursor"))
    return token[0], token[1]

"""The `JourneyHistory` table: one row per journey step of a customer (from, to, at, cause).

PartitionKey = customer id, RowKey = the step's sequence number (zero-padded, so rows list in order). A row is
written with an atomic insert: recording a step again (a redelivery, a second worker, recovery after a crash) is a
no-op. Rows older than AUDIT_RETENTION_DAYS are deleted by the daily cleanup; the customer keeps its stage.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from shared.domain.errors import InvalidInput
from shared.domain.names import JOURNEY_HISTORY
from shared.journeys.engine import Step
from shared.storage.backend import Storage, Table

_COLUMNS = ["PartitionKey", "RowKey", "cycle", "transition", "from_stage", "to_stage", "at", "cause", "due", "deal"]


def history_row_key(seq: int) -> str:
    return f"{seq:08d}"


class JourneyHistory:
    def __init__(self, storage: Storage):
        self.table: Table = storage.table(JOURNEY_HISTORY)

    def record(self, customer_id: str, steps: Iterable[Step]) -> int:
        """Insert each step once (an atomic insert: a step already recorded is skipped); returns how many were new."""
        entities = []
        for step in steps:
            entity = {"PartitionKey": customer_id, "RowKey": history_row_key(step.seq), "cycle": step.cycle,
                      "transition": step.transition, "from_stage": step.source, "to_stage": step.target,
                      "at": step.at, "cause": step.cause, "due": step.due.isoformat() if step.due else None,
                      "deal": step.deal}
            entities.append({k: v for k, v in entity.items() if v is not None})
        return sum(self.table.insert_many(entities)) if entities else 0

    def steps(self, customer_id: str) -> list[dict]:
        """A customer's history in order, as the journey API shows it."""
        return [_entry(row) for row in sorted(self.table.partition(customer_id), key=lambda r: r["RowKey"])]

    def iter_all(self) -> Iterator[dict]:
        """Every step of every customer (dashboard aggregates), with `customer`."""
        for row in self.table.query(select=_COLUMNS):
            yield {**_entry(row), "customer": row["PartitionKey"]}

    def delete_older_than(self, cutoff: datetime) -> int:
        """Retention: steps recorded before `cutoff` go (the customer keeps its stage)."""
        old = self.table.query("at lt @cutoff", {"cutoff": cutoff}, select=["PartitionKey", "RowKey"])
        return self.table.delete_many((row["PartitionKey"], row["RowKey"]) for row in old)


def _entry(row: dict) -> dict:
    at = row.get("at")
    return {"from": row.get("from_stage"), "to": row.get("to_stage"),
            "at": at.isoformat() if isinstance(at, datetime) else at, "cause": row.get("cause"),
            "cycle": row.get("cycle"), "transition": row.get("transition"), "due": row.get("due")}


def journey_view(customers, history: JourneyHistory, customer_id: str) -> dict:
    """`GET /api/customers/{id}/journey`: the stage, since when, and every recorded step (NotFound: no customer)."""
    from shared.domain.errors import NotFound
    from shared.journeys.engine import journey_meta

    if not customer_id or len(customer_id) > 200 or not customer_id.isprintable() or any(c in customer_id
                                                                                         for c in "/\\#?"):
        raise InvalidInput("not a customer id")
    stored = customers.get(customer_id)
    if stored is None:
        raise NotFound(f"no customer {customer_id!r}")
    meta = journey_meta(stored.customer)
    return {"customer": customer_id, "stage": stored.customer.stage, "since": meta.get("since"),
            "history": history.steps(customer_id)}

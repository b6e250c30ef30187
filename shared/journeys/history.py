"""The `JourneyHistory` table: one row per journey step of a customer (from, to, at, cause).

PartitionKey = customer id, RowKey = the step's sequence number (zero-padded, so rows list in order). A row is
written with an atomic insert: recording a step again (a redelivery, a second worker, recovery after a crash) is a
no-op. Rows older than AUDIT_RETENTION_DAYS are deleted by the daily cleanup; the customer keeps its stage.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.data.tables import TableClient

from shared.domain.errors import InvalidInput, TransientError
from shared.domain.names import JOURNEY_HISTORY
from shared.journeys.engine import Step
from shared.storage.tables import TableAccess

_COLUMNS = ["PartitionKey", "RowKey", "cycle", "transition", "from_stage", "to_stage", "at", "cause", "due", "deal"]


def history_row_key(seq: int) -> str:
    return f"{seq:08d}"


class JourneyHistory:
    def __init__(self, tables: TableAccess):
        self.tables = tables

    @property
    def client(self) -> TableClient:
        return self.tables.table(JOURNEY_HISTORY)

    def record(self, customer_id: str, steps: Iterable[Step]) -> int:
        """Insert each step once; returns how many were new."""
        created = 0
        for step in steps:
            entity = {"PartitionKey": customer_id, "RowKey": history_row_key(step.seq), "cycle": step.cycle,
                      "transition": step.transition, "from_stage": step.source, "to_stage": step.target,
                      "at": step.at, "cause": step.cause, "due": step.due.isoformat() if step.due else None,
                      "deal": step.deal}
            try:
                self.client.create_entity({k: v for k, v in entity.items() if v is not None})
                created += 1
            except ResourceExistsError:
                continue
            except HttpResponseError as exc:
                status = getattr(exc, "status_code", 0) or 0
                if status >= 500 or status in (408, 429):
                    raise TransientError(f"JourneyHistory: HTTP {status}") from None
                raise InvalidInput(f"JourneyHistory rejected a step: HTTP {status}") from None
        return created

    def steps(self, customer_id: str) -> list[dict]:
        """A customer's history in order, as the journey API shows it."""
        rows = self.client.query_entities("PartitionKey eq @pk", parameters={"pk": customer_id})
        return [_entry(row) for row in sorted(rows, key=lambda r: r["RowKey"])]

    def iter_all(self) -> Iterator[dict]:
        """Every step of every customer (dashboard aggregates), with `customer`."""
        for row in self.client.list_entities(select=_COLUMNS, results_per_page=1000):
            yield {**_entry(row), "customer": row["PartitionKey"]}

    def older_than(self, cutoff: datetime) -> Iterator[dict]:
        return self.client.query_entities("at lt @cutoff", parameters={"cutoff": cutoff},
                                          select=["PartitionKey", "RowKey"])


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

"""The daily sweep: the timer fans out one `sweep-shards` message per shard; each shard is evaluated on its own."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from shared.broker import Broker, OutgoingMessage
from shared.customers.store import CustomerStore, partition_key
from shared.domain.errors import InvalidInput, PermanentError
from shared.domain.model import Customer
from shared.domain.names import SWEEP_SHARDS
from shared.domain.vocabulary import Trigger
from shared.opportunities.ledger import KnownKeys, row_key
from shared.pipeline.planner import PLAN_CHUNK, Planner, PlanReport, loggable
from shared.rules import Evaluator
from shared.rules.model import Firing
from shared.settings import Settings
from shared.storage.backend import ReadAhead, background

if TYPE_CHECKING:
    from shared.journeys.service import JourneyRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardTask:
    """The body of a `sweep-shards` message."""

    shard: int
    now: datetime
    today: date | None = None

    def to_json(self) -> str:
        return json.dumps({"shard": self.shard, "now": self.now.isoformat(),
                           "today": self.today.isoformat() if self.today else None})

    @classmethod
    def from_json(cls, text: str | bytes) -> ShardTask:
        try:
            data = json.loads(text)
            return cls(int(data["shard"]), datetime.fromisoformat(data["now"]),
                       date.fromisoformat(data["today"]) if data.get("today") else None)
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"not a shard task: {exc}") from None


def plan_sweep(settings: Settings, broker: Broker, now: datetime, today: date | None = None) -> int:
    """Fan out one sweep: a `sweep-shards` message per shard. The ids make a repeated timer firing a no-op."""
    stamp = (today.isoformat() if today else now.strftime("%Y%m%dT%H%M"))
    messages = [OutgoingMessage(body=ShardTask(shard, now, today).to_json(),
                                message_id=f"sweep-{stamp}-{shard:04d}", subject="sweep-shard")
                for shard in range(settings.customer_shards)]
    broker.publish(SWEEP_SHARDS, messages)
    return len(messages)


@dataclass(frozen=True)
class ShardReads:
    """The two reads a shard's evaluation starts with, under way in the background: the ledger's firings of the
    partition (planned before, and any outbox row a crash left) and the customers' pages."""

    known: Future[KnownKeys]
    customers: ReadAhead


def start_shard_reads(customers: CustomerStore, planner: Planner, shard: int) -> ShardReads:
    """Start both reads of a shard now (reads only: nothing is claimed until the shard is evaluated)."""
    return ShardReads(background().submit(planner.ledger.known_keys, partition_key(shard)),
                      customers.read_shard(shard))


def evaluate_shard(customers: CustomerStore, evaluator: Evaluator, planner: Planner, task: ShardTask,
                   on_customer: Callable[[int], None] | None = None,
                   journeys: JourneyRunner | None = None, reads: ShardReads | None = None) -> PlanReport:
    """Evaluate every customer of a shard against the `sweep` rules and plan what fires.

    With `journeys`, each customer first takes the journey steps due on its local date (a date that passed while
    no sweep ran still counts), and the rules see the customer as it is after them. `reads`: the shard's reads,
    started earlier (`start_shard_reads`); else they start here, the ledger read and the first page of customers
    at once, and each next page while this one is evaluated.
    """
    report = PlanReport()

    def unreadable(customer_id: str, reason: str) -> None:
        log.warning("customer %s of shard %d skipped: %s", customer_id, task.shard, reason)
        report.rejected += 1

    if reads is None:
        reads = start_shard_reads(customers, planner, task.shard)
    try:
        return _evaluate(customers, evaluator, planner, task, reads, report, unreadable, on_customer, journeys)
    finally:
        reads.customers.close()  # when evaluating failed half-way: stop reading ahead


def _evaluate(customers: CustomerStore, evaluator: Evaluator, planner: Planner, task: ShardTask, reads: ShardReads,
              report: PlanReport, unreadable: Callable[[str, str], None], on_customer: Callable[[int], None] | None,
              journeys: JourneyRunner | None) -> PlanReport:
    known = reads.known.result()
    report.add(planner.recover(partition_key(task.shard), task.now, known))
    stream = customers.iter_shard(task.shard, on_invalid=unreadable, pages=reads.customers)

    def planned_before(key: str) -> bool:  # checked before rendering: re-matches cost no template work
        # A key that is a RowKey is its own row key (hashed keys are valid keys too): most need no key check.
        if key in known or row_key(key) in known:
            report.already_planned += 1
            report.firings += 1
            return True
        return False

    pending: list[tuple[Customer, Firing]] = []
    for customer in stream:
        report.customers += 1
        if journeys is not None:
            customer, moved = journeys.sweep_customer(customer, task.now, task.today)
            if moved is not None:
                report.add(moved)
        try:
            firings = evaluator.evaluate(customer, now=task.now, trigger=Trigger.SWEEP, today=task.today,
                                         skip=planned_before)
        except PermanentError as exc:  # one customer's bad data never blocks the rest of the shard
            unreadable(customer.id, loggable(exc))
            firings = []
        pending.extend((customer, firing) for firing in firings)
        if len(pending) >= PLAN_CHUNK:
            report.add(planner.plan(pending, task.now))
            pending.clear()
        if on_customer:
            on_customer(1)
    if pending:
        report.add(planner.plan(pending, task.now))
    return report


def evaluate_shards(customers: CustomerStore, evaluator: Evaluator, planner: Planner, tasks: Sequence[ShardTask],
                    journeys: JourneyRunner | None = None) -> Iterator[PlanReport]:
    """Evaluate shards one after another in this process, each shard's report as it is done. The next shard's
    reads are under way while this one is evaluated, so the storage's answer time hides behind the evaluation
    instead of adding to it."""
    ahead: ShardReads | None = None
    try:
        for index, task in enumerate(tasks):
            reads = ahead or start_shard_reads(customers, planner, task.shard)
            ahead = None
            if index + 1 < len(tasks):
                ahead = start_shard_reads(customers, planner, tasks[index + 1].shard)
            yield evaluate_shard(customers, evaluator, planner, task, journeys=journeys, reads=reads)
    finally:
        if ahead is not None:
            ahead.customers.close()

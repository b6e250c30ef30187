"""CRM change events: merge the change into `Customers`, then plan the `on: change` rules it triggers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from shared.crm.merge import apply_event, customer_id_of
from shared.customers.store import CustomerStore
from shared.domain.errors import Conflict, InvalidInput
from shared.domain.events import CrmEvent
from shared.domain.model import Customer
from shared.domain.vocabulary import Trigger
from shared.journeys.engine import has_pending
from shared.opportunities.attribution import attribute, closed_deal
from shared.opportunities.ledger import OpportunityLedger
from shared.pipeline.planner import Planner, PlanReport
from shared.rules import Evaluator
from shared.rules.model import RuleSet

if TYPE_CHECKING:
    from shared.journeys.service import JourneyRunner

MERGE_ATTEMPTS = 8

RecordFetcher = Callable[[CrmEvent], dict]


@dataclass(frozen=True)
class EventOutcome:
    customer_id: str
    changed: bool
    deleted: bool
    report: PlanReport


def refetched_record(event: CrmEvent, fetchers: Mapping[str, RecordFetcher]) -> dict | None:
    """The record re-read from its CRM when the event says its own copy will not do (`needs_refetch`), else None.

    `fetchers` maps a CRM (`event.source`) to its client's re-read; a CRM without one cannot serve such an event,
    which is then bad input rather than a retry.
    """
    if not event.needs_refetch:
        return None
    fetch = fetchers.get(event.source)
    if fetch is None:
        raise InvalidInput(f"{event.source} sent a stripped record and it cannot be re-queried here")
    return fetch(event)


def handle_crm_event(customers: CustomerStore, evaluator: Evaluator, planner: Planner, event: CrmEvent,
                     now: datetime, fetchers: Mapping[str, RecordFetcher] | None = None,
                     journeys: JourneyRunner | None = None) -> EventOutcome:
    """Plan the `on: change` rules a CRM change triggers (`prev` = the stored version), then merge it into the store.

    Planning comes first so that a crash can never lose a firing: killed after planning, the redelivered event merges
    to the same result, its firings are already claimed (any left unpublished are published then) and the write
    follows; killed before, nothing happened. Writing first would lose them: the redelivery would see no change.
    The merge is a read-merge-write loop on the customer's ETag, so concurrent events for one customer never lose
    each other's changes (a lost race re-reads, re-plans — claims make that idempotent — and writes again), and
    `apply_event` keeps the newer value per field when events arrive out of order.
    With `journeys`, the journey steps the change makes due are taken in the same write, then recorded and planned
    (`shared/journeys/service.py`); steps a crash left pending are finished by any later event, a redelivery too.
    """
    refetched = refetched_record(event, fetchers or {})
    customer_id = customer_id_of(event, refetched)
    if not customer_id:
        raise InvalidInput(f"{event.source} {event.entity} event {event.event_id} names no customer")
    report = PlanReport()
    for _ in range(MERGE_ATTEMPTS):
        stored = customers.get(customer_id)
        current = stored.customer if stored else None
        updated = apply_event(current, event, refetched)
        if updated is not None and journeys is not None:
            updated, _ = journeys.advance(updated, now=now, prev=current, cause=f"{event.source}:{event.event_id}")
        if updated == current:
            # A redelivery after a crash between the write and the attribution: attribute now (idempotent).
            attribute_outcome(planner.ledger, evaluator.ruleset, current, event, now)
            if current is not None and journeys is not None and has_pending(current):
                report.add(journeys.complete(current, now, etag=stored.etag, recovering=True))
            return EventOutcome(customer_id, False, False, report)
        try:
            if updated is None:
                customers.delete(customer_id)
                return EventOutcome(customer_id, True, True, report)
            firings = evaluator.evaluate(updated, now=now, trigger=Trigger.CHANGE, prev=current)
            if firings:
                report.add(planner.plan([(updated, firing) for firing in firings], now, recover_existing=True))
            etag = customers.put(updated, stored.etag if stored else None)
            break
        except Conflict:
            continue  # another event for this customer won the race: re-read, merge and plan again
    else:
        raise Conflict(f"customer {customer_id} kept changing during {MERGE_ATTEMPTS} merge attempts")
    attribute_outcome(planner.ledger, evaluator.ruleset, updated, event, now)
    if journeys is not None:
        report.add(journeys.complete(updated, now, etag=etag,
                                     recovering=bool(current and has_pending(current))))
    report.customers = 1
    return EventOutcome(customer_id, True, False, report)


def attribute_outcome(ledger: OpportunityLedger, ruleset: RuleSet, customer: Customer | None, event: CrmEvent,
                      now: datetime) -> None:
    """A won or lost deal closes the open opportunity it answers (`shared/opportunities/attribution.py`)."""
    if customer is None or event.entity != "deal":
        return
    deal = closed_deal(customer, event)
    if deal is not None:
        attribute(ledger, ruleset, customer, deal, event.source, now)

"""The event pipeline: daily sweep fan-out, shard evaluation, CRM change events → exactly-once planned actions.

Order of work for a batch of firings (what makes it crash-safe):
  1. claim each firing in the ledger (atomic insert; the claim stores the rendered messages, `published=False`);
  2. publish the claimed firings' messages to their queues (message_id = action dedupe key);
  3. mark the claims published.
Held messages (actions waiting for approval) are handed to the approval flow between 1 and 2: one approval each,
inserted atomically, and the claim also carries the Teams card asking the owner (`shared/approvals/flow.py`).
A crash after 1 leaves unpublished claims that the next evaluation of the shard publishes (step 0: recover); a
crash after 2 makes that recovery publish twice, which broker duplicate detection drops. Firings already claimed
are skipped before they are rendered (`Evaluator.evaluate(skip=...)`), so customers that fire nothing, or fire what
was planned before, cost neither writes nor template work.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from shared.broker import Broker, OutgoingMessage
from shared.crm.merge import apply_event, customer_id_of
from shared.customers.store import CustomerStore, partition_key
from shared.domain.errors import Conflict, InvalidInput, PayloadTooLarge, PermanentError
from shared.domain.events import CrmEvent
from shared.domain.messages import ActionMessage
from shared.domain.model import Customer
from shared.domain.names import CHANNEL_QUEUES, SWEEP_SHARDS
from shared.domain.schedule import next_business_slot
from shared.journeys.engine import has_pending
from shared.opportunities.attribution import attribute, closed_deal
from shared.opportunities.ledger import (
    CAPPED,
    HELD_OUT,
    NEEDS_APPROVAL,
    QUEUED,
    SUPPRESSED,
    Claim,
    OpportunityLedger,
    QueuedMessage,
    row_key,
)
from shared.rules import Evaluator
from shared.rules.model import Firing, RuleSet
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.approvals.flow import ApprovalFlow
    from shared.contact.caps import ContactGuard
    from shared.contact.digest import RepRouter
    from shared.journeys.service import JourneyRunner

log = logging.getLogger("crmflow.pipeline")

PLAN_CHUNK = 500  # firings claimed and published together (amortises transactions and broker calls)


@dataclass
class PlanReport:
    """What one evaluation planned (counts only: safe to log)."""

    customers: int = 0
    firings: int = 0
    planned: int = 0
    already_planned: int = 0
    recovered: int = 0
    messages: int = 0
    approvals: int = 0  # approvals opened (held messages waiting for a person)
    rejected: int = 0  # customers or firings that can never be planned (logged with the reason), skipped
    by_rule: Counter = field(default_factory=Counter)
    by_channel: Counter = field(default_factory=Counter)
    by_status: Counter = field(default_factory=Counter)

    def add(self, other: PlanReport) -> None:
        for name in ("customers", "firings", "planned", "already_planned", "recovered", "messages", "approvals",
                     "rejected"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.by_rule.update(other.by_rule)
        self.by_channel.update(other.by_channel)
        self.by_status.update(other.by_status)


class Planner:
    """Turns firings into ledger claims and broker messages, and publishes each firing exactly once."""

    def __init__(self, settings: Settings, ledger: OpportunityLedger, broker: Broker,
                 approvals: ApprovalFlow | None = None, contact: ContactGuard | None = None,
                 reps: RepRouter | None = None):
        """Without `approvals`, held messages stay in the ledger claim (nothing asks anyone); without `contact`,
        no contact caps apply; without `reps`, cards go to reps at once (no digests, no working hours)."""
        self.settings = settings
        self.ledger = ledger
        self.broker = broker
        self.approvals = approvals
        self.contact = contact
        self.reps = reps

    def claim_for(self, customer: Customer, firing: Firing, now: datetime) -> Claim:
        """The ledger claim for one firing: its rendered messages (follow-ups nested), emails in business hours."""
        timezone = customer.timezone or self.settings.default_timezone
        hours, days = self.settings.business_hours, self.settings.business_days
        email_slot = next_business_slot(now, timezone, hours, days)

        def not_before(action) -> datetime | None:
            if action.deferred_to is not None:  # a contact cap moved it: business hours of that day
                return deferred_slot(now, action.deferred_to, timezone, hours, days)
            return email_slot if action.channel == "email" else None
        properties = {"rule": firing.rule_id, "kind": firing.kind, "firing_key": firing.dedupe_key,
                      "customer_id": customer.id}
        messages, held = [], []
        for action, message in firing.to_messages(now, not_before=not_before):
            message = _with_properties(message, properties)
            outgoing = OutgoingMessage(body=message.to_json(), message_id=action.dedupe_key,
                                       scheduled_at=message.not_before, subject=action.channel, properties=properties)
            if self.reps is not None and action.status != NEEDS_APPROVAL:  # digest, or the rep's working hours
                outgoing = self.reps.route(customer, message, outgoing, now, firing.recommendation)
            queued = QueuedMessage(CHANNEL_QUEUES[action.channel], outgoing)
            (held if action.status == NEEDS_APPROVAL else messages).append(queued)
        held_out = any(a.status == HELD_OUT for a in firing.actions)
        status = QUEUED if messages else NEEDS_APPROVAL if held else HELD_OUT if held_out else \
            CAPPED if any(a.status == CAPPED for a in firing.actions) else SUPPRESSED
        if held and self.approvals is not None:  # the cards asking the owner travel as ordinary messages
            requests = (self.approvals.request_message(customer, firing, queued, now) for queued in held)
            messages += [request for request in requests if request is not None]
        actions = tuple({"key": a.dedupe_key, "channel": a.channel, "status": a.status, "reason": a.reason}
                        for a in firing.actions)
        return Claim(key=firing.dedupe_key, rule=firing.rule_id, kind=firing.kind, customer_id=customer.id,
                     owner_name=customer.owner.name if customer.owner else None, owner_email=firing.owner_email,
                     status=status, recommendation=firing.recommendation, local_date=str(firing.local_date),
                     actions=actions, messages=tuple(messages), held=tuple(held), campaign=firing.campaign,
                     manager_email=customer.manager.email if customer.manager else None,
                     arm=firing.arm)

    def plan(self, pairs: Sequence[tuple[Customer, Firing]], now: datetime, *,
             recover_existing: bool = False) -> PlanReport:
        """Claim and publish firings (pairs of customer and firing); ones claimed before are only counted.

        `recover_existing`: claims that exist but were never published (a crash between claim and publish) are
        published now — the change-event path, which has no shard-wide recovery pass before it."""
        report = PlanReport(firings=len(pairs))
        if self.contact is not None:
            pairs = apply_contact_caps(self.contact, pairs)
        claims = []
        for customer, firing in pairs:
            try:
                claims.append(self.claim_for(customer, firing, now))
            except PermanentError as exc:  # this firing can never be rendered or stored; the others go on
                _log_rejected(firing.dedupe_key, customer.id, _loggable(exc))
                report.rejected += 1
        result = self.ledger.claim(claims, now)
        for claim, reason in result.rejected:
            _log_rejected(claim.key, claim.customer_id, reason)
        report.rejected += len(result.rejected)
        report.already_planned += result.already_planned
        report.planned = len(result.to_publish)
        to_publish = list(result.to_publish)
        if recover_existing and result.already_planned:
            fresh = {claim.key for claim in result.to_publish}
            stranded = self.ledger.unpublished_of(c for c in claims if c.key not in fresh)
            report.recovered += len(stranded)
            to_publish += stranded
        self.publish(to_publish, now, report)
        return report

    def publish(self, claims: Sequence[Claim], now: datetime, report: PlanReport) -> None:
        by_queue: dict[str, list[OutgoingMessage]] = defaultdict(list)
        for claim in claims:
            report.by_rule[claim.rule] += 1
            report.by_status[claim.status] += 1
            for action in claim.actions:
                report.by_channel[f"{action['channel']}:{action['status']}"] += 1
            for queued in claim.messages:
                by_queue[queued.queue].append(queued.message)
        held = [claim for claim in claims if claim.held]
        if held and self.approvals is not None:  # before the cards go out, so their links resolve
            report.approvals += self.approvals.open(held, now)
        for queue, messages in by_queue.items():
            self.broker.publish(queue, messages)
            report.messages += len(messages)
        if claims:
            # Held messages handed to the approval store are blanked from the claim; without one they stay.
            self.ledger.mark_published(
                claims if self.approvals is not None else [replace(c, held=()) for c in claims], now)

    def recover(self, partition: str, now: datetime) -> PlanReport:
        """Publish claims a crash left unpublished in this partition."""
        report = PlanReport()
        claims = self.ledger.unpublished(partition)
        if claims:
            log.warning("re-publishing %d unpublished claims of %s", len(claims), partition)
            self.publish(claims, now, report)
            report.recovered = len(claims)
        return report


def _log_rejected(key: str, customer_id: str, reason: str) -> None:
    log.warning("firing %s of customer %s skipped: %s", key, customer_id, reason)


def _loggable(exc: PermanentError) -> str:
    """The error's class and field, never its message: messages about bad input may quote the value."""
    if isinstance(exc, InvalidInput):
        return f"InvalidInput at {exc.location.field}" if exc.location.field else "InvalidInput"
    return exc.message if isinstance(exc, PayloadTooLarge) else type(exc).__name__


def apply_contact_caps(contact: ContactGuard, pairs: Sequence[tuple[Customer, Firing]],
                       ) -> list[tuple[Customer, Firing]]:
    """The pairs with each customer's competing firings ranked against the contact caps (order kept)."""
    by_customer: dict[str, list[int]] = defaultdict(list)
    for index, (customer, _) in enumerate(pairs):
        by_customer[customer.id].append(index)
    result = list(pairs)
    for customer_id, indexes in by_customer.items():
        capped = contact.apply(customer_id, [pairs[i][1] for i in indexes])
        for index, firing in zip(indexes, capped, strict=True):
            result[index] = (pairs[index][0], firing)
    return result


def deferred_slot(now: datetime, day: date, timezone: str, hours, days) -> datetime:
    """The first business slot on or after the start of `day` in the customer's zone (never before `now`)."""
    start = datetime.combine(day, time(0), tzinfo=ZoneInfo(timezone))
    moment = max(now, start)
    return next_business_slot(moment, timezone, hours, days) or moment.astimezone(UTC)


def _with_properties(message: ActionMessage, properties: dict[str, str]) -> ActionMessage:
    """The message (and its nested follow-ups) tagged with the firing, so senders can report deliveries to the
    ledger."""
    return replace(message, properties={**message.properties, **properties}, followups=tuple(
        _with_properties(ActionMessage.from_json(f), properties).to_json() for f in message.followups))


# ---------------------------------------------------------------------------------------------------------------
# Daily sweep
# ---------------------------------------------------------------------------------------------------------------
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


def evaluate_shard(customers: CustomerStore, evaluator: Evaluator, planner: Planner, task: ShardTask,
                   on_customer: Callable[[int], None] | None = None,
                   journeys: JourneyRunner | None = None) -> PlanReport:
    """Evaluate every customer of a shard against the `sweep` rules and plan what fires.

    With `journeys`, each customer first takes the journey steps due on its local date (a date that passed while
    no sweep ran still counts), and the rules see the customer as it is after them.
    """
    partition = partition_key(task.shard)
    report = planner.recover(partition, task.now)
    known = planner.ledger.known_keys(partition)

    def planned_before(key: str) -> bool:  # checked before rendering: re-matches cost no template work
        if row_key(key) in known:
            report.already_planned += 1
            report.firings += 1
            return True
        return False

    def unreadable(customer_id: str, reason: str) -> None:
        log.warning("customer %s of shard %d skipped: %s", customer_id, task.shard, reason)
        report.rejected += 1

    pending: list[tuple[Customer, Firing]] = []
    for customer in customers.iter_shard(task.shard, on_invalid=unreadable):
        report.customers += 1
        if journeys is not None:
            customer, moved = journeys.sweep_customer(customer, task.now, task.today)
            if moved is not None:
                report.add(moved)
        try:
            firings = evaluator.evaluate(customer, now=task.now, trigger="sweep", today=task.today,
                                         skip=planned_before)
        except PermanentError as exc:  # one customer's bad data never blocks the rest of the shard
            unreadable(customer.id, _loggable(exc))
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


# ---------------------------------------------------------------------------------------------------------------
# CRM change events
# ---------------------------------------------------------------------------------------------------------------
MERGE_ATTEMPTS = 8


@dataclass(frozen=True)
class EventOutcome:
    customer_id: str
    changed: bool
    deleted: bool
    report: PlanReport


def handle_crm_event(customers: CustomerStore, evaluator: Evaluator, planner: Planner, event: CrmEvent,
                     now: datetime, fetch_record: Callable[[CrmEvent], dict] | None = None,
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
    refetched = None
    if event.needs_refetch:
        if fetch_record is None:
            raise InvalidInput(f"{event.source} sent a stripped record and it cannot be re-queried here")
        refetched = fetch_record(event)
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
            firings = evaluator.evaluate(updated, now=now, trigger="change", prev=current)
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


def summarize_reports(reports: Iterable[PlanReport]) -> PlanReport:
    total = PlanReport()
    for report in reports:
        total.add(report)
    return total

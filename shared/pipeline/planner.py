"""Firings → ledger claims → broker messages, each firing published exactly once.

Order of work for a batch of firings (what makes it crash-safe):
  1. claim each firing in the ledger (atomic insert, ≤ 100 per transaction; the same transaction stores the rendered
     messages in an outbox row of the partition);
  2. publish the claimed firings' messages to their queues (message_id = action dedupe key);
  3. mark the claims published (delete the outbox row: one small request per transaction).
Held messages (actions waiting for approval) are handed to the approval flow between 1 and 2: one approval each,
inserted atomically, and the claim also carries the Teams card asking the owner (`shared/approvals/flow.py`).
A crash after 1 leaves unpublished claims that the next evaluation of the shard publishes (step 0: recover); a
crash after 2 makes that recovery publish twice, which broker duplicate detection drops. Firings already claimed
are skipped before they are rendered (`Evaluator.evaluate(skip=...)`), so customers that fire nothing, or fire what
was planned before, cost neither writes nor template work.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from shared.broker import Broker
from shared.broker.outbound import publish_by_queue, queued
from shared.domain.errors import InvalidInput, PayloadTooLarge, PermanentError
from shared.domain.messages import ActionMessage
from shared.domain.model import Customer
from shared.domain.schedule import next_business_slot
from shared.domain.vocabulary import ActionStatus, Channel, OpportunityStatus
from shared.opportunities.ledger import FiringClaim, KnownKeys, OpportunityLedger
from shared.rules.model import Firing
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.approvals.flow import ApprovalFlow
    from shared.contact.caps import ContactGuard
    from shared.contact.digest import RepRouter

log = logging.getLogger(__name__)

PLAN_CHUNK = 500  # firings claimed and published together (amortises transactions and broker calls)

# Bound once: reading an enum member is a slow attribute lookup on Python 3.11, and these are read per action.
_NEEDS_APPROVAL, _HELD_OUT, _CAPPED = ActionStatus.NEEDS_APPROVAL, ActionStatus.HELD_OUT, ActionStatus.CAPPED
_EMAIL_CHANNEL = Channel.EMAIL


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


def summarize_reports(reports: Iterable[PlanReport]) -> PlanReport:
    """One report adding up many (a sweep's shards)."""
    total = PlanReport()
    for report in reports:
        total.add(report)
    return total


class Planner:
    """Turns firings into ledger claims and broker messages, and publishes each firing exactly once."""

    def __init__(self, settings: Settings, ledger: OpportunityLedger, broker: Broker, approvals: ApprovalFlow,
                 contact: ContactGuard | None = None, reps: RepRouter | None = None):
        """Without `contact`, no contact caps apply; without `reps`, cards go to reps at once (no digests, no
        working hours)."""
        self.settings = settings
        self.ledger = ledger
        self.broker = broker
        self.approvals = approvals
        self.contact = contact
        self.reps = reps

    def claim_for(self, customer: Customer, firing: Firing, now: datetime) -> FiringClaim:
        """The ledger claim for one firing: its rendered messages (follow-ups nested), emails in business hours."""
        timezone = customer.timezone or self.settings.default_timezone
        hours, days = self.settings.business_hours, self.settings.business_days
        email_slot = next_business_slot(now, timezone, hours, days)

        def not_before(action) -> datetime | None:
            if action.deferred_to is not None:  # a contact cap moved it: business hours of that day
                return deferred_slot(now, action.deferred_to, timezone, hours, days)
            return email_slot if action.channel == _EMAIL_CHANNEL else None
        properties = {"rule": firing.rule_id, "kind": firing.kind, "firing_key": firing.dedupe_key,
                      "customer_id": customer.id}
        messages, held = [], []
        for action, message in firing.to_messages(now, not_before=not_before):
            message = _with_properties(message, properties)
            waiting = queued(message, properties=properties)
            if self.reps is not None and action.status != _NEEDS_APPROVAL:  # digest, or the rep's working hours
                waiting = replace(waiting, message=self.reps.route(customer, message, waiting.message, now,
                                                                   firing.recommendation))
            (held if action.status == _NEEDS_APPROVAL else messages).append(waiting)
        held_out = any(a.status == _HELD_OUT for a in firing.actions)
        status = (OpportunityStatus.QUEUED if messages else OpportunityStatus.NEEDS_APPROVAL if held
                  else OpportunityStatus.HELD_OUT if held_out
                  else OpportunityStatus.CAPPED if any(a.status == _CAPPED for a in firing.actions)
                  else OpportunityStatus.SUPPRESSED)
        # The cards asking the owner travel as ordinary messages.
        requests = (self.approvals.request_message(customer, firing, waiting, now) for waiting in held)
        messages += [request for request in requests if request is not None]
        actions = tuple({"key": a.dedupe_key, "channel": a.channel, "status": a.status, "reason": a.reason}
                        for a in firing.actions)
        return FiringClaim(key=firing.dedupe_key, rule=firing.rule_id, kind=firing.kind, customer_id=customer.id,
                           owner_name=customer.owner.name if customer.owner else None,
                           owner_email=firing.owner_email, status=status, recommendation=firing.recommendation,
                           local_date=str(firing.local_date), actions=actions, messages=tuple(messages),
                           held=tuple(held), campaign=firing.campaign,
                           manager_email=customer.manager.email if customer.manager else None, arm=firing.arm)

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
                _log_rejected(firing.dedupe_key, customer.id, loggable(exc))
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

    def publish(self, claims: Sequence[FiringClaim], now: datetime, report: PlanReport) -> None:
        """Open the claims' approvals, publish their messages, mark them published (steps 2 and 3)."""
        for claim in claims:
            report.by_rule[claim.rule] += 1
            report.by_status[claim.status] += 1
            for action in claim.actions:
                report.by_channel[f"{action['channel']}:{action['status']}"] += 1
        held = [claim for claim in claims if claim.held]
        if held:  # before the cards go out, so their links resolve
            report.approvals += self.approvals.open(held, now)
        report.messages += publish_by_queue(self.broker, (message for claim in claims for message in claim.messages))
        if claims:
            self.ledger.mark_published(claims, now)

    def recover(self, partition: str, now: datetime, known: KnownKeys | None = None) -> PlanReport:
        """Publish claims a crash left unpublished in this partition (`known`: its `known_keys`, if read)."""
        report = PlanReport()
        claims = self.ledger.unpublished(partition, known)
        if claims:
            log.warning("re-publishing %d unpublished claims of %s", len(claims), partition)
            self.publish(claims, now, report)
            report.recovered = len(claims)
        return report


def _log_rejected(key: str, customer_id: str, reason: str) -> None:
    log.warning("firing %s of customer %s skipped: %s", key, customer_id, reason)


def loggable(exc: PermanentError) -> str:
    """The error's class and field, never its message: messages about bad input may quote the value."""
    if isinstance(exc, InvalidInput):
        return f"InvalidInput at {exc.location.field}" if exc.location.field else "InvalidInput"
    return exc.message if isinstance(exc, PayloadTooLarge) else type(exc).__name__


def apply_contact_caps(contact: ContactGuard, pairs: Sequence[tuple[Customer, Firing]],
                       ) -> list[tuple[Customer, Firing]]:
    """The pairs with each customer's competing firings ranked against the contact caps (order kept; one batched
    reservation for the whole batch)."""
    by_customer: dict[str, list[int]] = defaultdict(list)
    for index, (customer, _) in enumerate(pairs):
        by_customer[customer.id].append(index)
    capped = contact.apply_many({customer_id: [pairs[i][1] for i in indexes]
                                 for customer_id, indexes in by_customer.items()})
    result = list(pairs)
    for customer_id, indexes in by_customer.items():
        for index, firing in zip(indexes, capped[customer_id], strict=True):
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

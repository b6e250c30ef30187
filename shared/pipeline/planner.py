"""Firings → ledger claims → broker messages, each firing published exactly once.

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

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from shared.broker import Broker
from shared.broker.outbound import publish_by_queue, queued
from shared.domain.messages import ActionMessage
from shared.domain.model import Customer
from shared.domain.schedule import next_business_slot
from shared.domain.vocabulary import ActionStatus, Channel, OpportunityStatus
from shared.opportunities.ledger import FiringClaim, OpportunityLedger
from shared.rules.model import Firing
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.approvals.flow import ApprovalFlow

log = logging.getLogger(__name__)

PLAN_CHUNK = 500  # firings claimed and published together (amortises transactions and broker calls)

# Bound once: reading an enum member is a slow attribute lookup on Python 3.11, and these are read per action.
_NEEDS_APPROVAL = ActionStatus.NEEDS_APPROVAL
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
    by_rule: Counter = field(default_factory=Counter)
    by_channel: Counter = field(default_factory=Counter)
    by_status: Counter = field(default_factory=Counter)

    def add(self, other: PlanReport) -> None:
        for name in ("customers", "firings", "planned", "already_planned", "recovered", "messages", "approvals"):
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

    def __init__(self, settings: Settings, ledger: OpportunityLedger, broker: Broker, approvals: ApprovalFlow):
        self.settings = settings
        self.ledger = ledger
        self.broker = broker
        self.approvals = approvals

    def claim_for(self, customer: Customer, firing: Firing, now: datetime) -> FiringClaim:
        """The ledger claim for one firing: its rendered messages (follow-ups nested), emails in business hours."""
        timezone = customer.timezone or self.settings.default_timezone
        email_slot = next_business_slot(now, timezone, self.settings.business_hours, self.settings.business_days)
        properties = {"rule": firing.rule_id, "kind": firing.kind, "firing_key": firing.dedupe_key,
                      "customer_id": customer.id}
        messages, held = [], []
        for action, message in firing.to_messages(
                now, not_before=lambda action: email_slot if action.channel == _EMAIL_CHANNEL else None):
            message = _with_properties(message, properties)
            (held if action.status == _NEEDS_APPROVAL else messages).append(
                queued(message, properties=properties))
        status = (OpportunityStatus.QUEUED if messages else OpportunityStatus.NEEDS_APPROVAL if held
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
                           held=tuple(held), campaign=firing.campaign)

    def plan(self, pairs: Sequence[tuple[Customer, Firing]], now: datetime) -> PlanReport:
        """Claim and publish firings (pairs of customer and firing); ones claimed before are only counted."""
        report = PlanReport(firings=len(pairs))
        claims = [self.claim_for(customer, firing, now) for customer, firing in pairs]
        result = self.ledger.claim(claims, now)
        report.already_planned += result.already_planned
        report.planned = len(result.to_publish)
        self.publish(result.to_publish, now, report)
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

    def recover(self, partition: str, now: datetime) -> PlanReport:
        """Publish claims a crash left unpublished in this partition."""
        report = PlanReport()
        claims = self.ledger.unpublished(partition)
        if claims:
            log.warning("re-publishing %d unpublished claims of %s", len(claims), partition)
            self.publish(claims, now, report)
            report.recovered = len(claims)
        return report


def _with_properties(message: ActionMessage, properties: dict[str, str]) -> ActionMessage:
    """The message (and its nested follow-ups) tagged with the firing, so senders can report deliveries to the
    ledger."""
    return replace(message, properties={**message.properties, **properties}, followups=tuple(
        _with_properties(ActionMessage.from_json(f), properties).to_json() for f in message.followups))

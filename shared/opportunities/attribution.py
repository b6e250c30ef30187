"""Outcomes from the CRM: a won or lost deal answers the customer's open opportunity, once.

Which opportunity a deal answers:
- a campaign rule's (its `campaign`, default the rule id) when the deal's `campaign_id` names that campaign;
- otherwise a rule with `converts_on: {product, within_days}` whose product the deal is for, closed within
  `within_days` of the opportunity being detected (not before it).
Among several, the most recently detected one before the deal closed. A deal already attributed keeps its
opportunity (a redelivered event, or a later change of the same deal, updates that one and no other), and an
opportunity answered by one deal is never counted again for another: revenue per campaign and rule counts each
deal once.

The CRM is the record of truth for closed deals: its outcome replaces a rep's click on the same opportunity (the
rep's decision stays visible in the audit columns until then), and a rep cannot change it afterwards
(`OpportunityLedger.record_outcome`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from shared.domain.errors import Conflict
from shared.domain.events import CrmEvent
from shared.domain.model import Customer
from shared.opportunities.ledger import CLOSED, CRM, REP, Opportunity, OpportunityLedger
from shared.rules.model import RuleSet

log = logging.getLogger(__name__)
MAX_CANDIDATES = 1000


@dataclass(frozen=True)
class ClosedDeal:
    """What attribution needs from a won or lost deal."""

    id: str
    stage: str  # won | lost
    amount: float | None
    product: str | None
    campaign_id: str | None
    closed_on: date | None


def closed_deal(customer: Customer, event: CrmEvent) -> ClosedDeal | None:
    """The deal of a deal event as stored on the customer after the merge, if it is won or lost."""
    if event.entity != "deal" or event.operation == "delete":
        return None
    record = event.record or {}
    deal_id = str((record.get("deal") or {}).get("id") or event.record_id)
    deal = next((d for d in customer.deals if d.id == deal_id), None)
    if deal is None or deal.stage not in CLOSED:
        return None
    purchase = next((p for p in customer.purchases if p.deal_id == deal_id), None)
    sent = record.get("purchase") or {}
    product = (purchase.product if purchase else None) or sent.get("product") or deal.extra.get("product")
    if purchase is not None and purchase.amount is not None:
        amount = _amount(purchase.amount)  # what was actually paid
    elif sent.get("amount") is not None:
        amount = _amount(sent["amount"])
    else:
        amount = _amount(deal.amount)
    when = event.occurred_at or event.received_at
    closed_on = deal.closed_on or (purchase.date if purchase else None) or (when.date() if when else None)
    return ClosedDeal(deal_id, deal.stage, amount, str(product) if product else None, deal.campaign_id, closed_on)


def attribute(ledger: OpportunityLedger, ruleset: RuleSet, customer: Customer, deal: ClosedDeal, source: str,
              now: datetime) -> Opportunity | None:
    """Record the deal's outcome on the opportunity it answers; None when it answers none."""
    mine = ledger.query(customer_id=customer.id, limit=MAX_CANDIDATES)
    target = next((o for o in mine if o.deal_id == deal.id), None)
    if target is None:
        matching = [o for o in mine if _answerable(o) and _answers(o, deal, ruleset)]
        if not matching:
            return None
        target = max(matching, key=lambda o: (o.detected_at, o.key))
    try:
        return ledger.record_outcome(target.id, deal.stage, source=CRM, now=now, amount=deal.amount,
                                     deal_id=deal.id, by=f"crm:{source}", decision=deal.stage)
    except Conflict as exc:  # another deal answered it meanwhile (a race between two deals)
        log.info("deal not attributed to %s: %s", target.id, exc.message)
        return None


def _answerable(opportunity: Opportunity) -> bool:
    """Open, or closed by the rep alone (the CRM's deal confirms or corrects it); never one another deal closed."""
    if opportunity.deal_id:
        return False
    return opportunity.is_open or (opportunity.status in CLOSED and opportunity.outcome_source == REP)


def _answers(opportunity: Opportunity, deal: ClosedDeal, ruleset: RuleSet) -> bool:
    if opportunity.campaign:
        return deal.campaign_id is not None and deal.campaign_id == opportunity.campaign
    try:
        rule = ruleset.rule(opportunity.rule)
    except KeyError:
        return False  # the rule was removed since
    converts = rule.converts_on
    if converts is None or deal.product is None or deal.product != converts.product:
        return False
    if deal.closed_on is None:
        return True
    waited = (deal.closed_on - _day(opportunity.detected_at)).days
    return 0 <= waited <= converts.within_days


def _day(moment: Any) -> date:
    return moment.date() if isinstance(moment, datetime) else moment


def _amount(value: Any) -> float | None:
    """A finite non-negative amount, else none (the outcome still counts; a bad amount is not revenue)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


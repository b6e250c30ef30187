"""GET /api/dashboard: what was found, what it earned, where customers are, and how delivery is doing.

Everything is aggregated from the tables the pipeline already writes (no counters to keep in step): the ledger
(`Opportunities`), `Customers` (journey stages), the delivery audit rows (`Deliveries`, last `days` days), pending
`Approvals`, the broker's dead-letter queues and `JourneyHistory` (transitions per edge, days per stage, SLA).
Reads select only the columns they count. At a million customers the customer, ledger and history scans take
seconds: `shared/dashboard/snapshot.py` runs this after a sweep and on a timer and stores the result, and pages read
that snapshot.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta
from statistics import median
from typing import Any

from shared.approvals.flow import ApprovalStore
from shared.broker import Broker
from shared.customers.store import entity_to_customer
from shared.domain.names import CHANNEL_QUEUES, CRM_EVENTS, CUSTOMERS, DELIVERIES, JOURNEY_HISTORY, SWEEP_SHARDS
from shared.journeys.model import Journey
from shared.opportunities.ledger import LOST, WON, OpportunityLedger, stored_amount
from shared.opportunities.uplift import uplift_by_rule
from shared.rules.model import RuleSet
from shared.segments.holdout import CONTROL, TREATMENT
from shared.segments.rfm import DEFAULT as DEFAULT_SEGMENTS
from shared.segments.summary import count_segments
from shared.storage.backend import Storage

JOURNEY_STAGES = ("contract", "implementation", "onboarding", "utilization", "renewal")
TRANSITION_DAYS = 30
DLQ_PEEK_LIMIT = 1000


def build_dashboard(storage: Storage, ledger: OpportunityLedger, approvals: ApprovalStore, broker: Broker,
                    now: datetime, days: int = 7, journey: Journey | None = None,
                    ruleset: RuleSet | None = None) -> dict[str, Any]:
    """The dashboard as one JSON-ready dict (counts and sums only: no customer names or addresses).

    `segments`: customers per RFM label and score on `now`'s date (the ruleset's segments.yaml, else the shipped
    one). `uplift`: per rule with a holdout, treatment against control (`shared/opportunities/uplift.py`).
    """
    return {
        "generated_at": now.isoformat(),
        "opportunities": _opportunities(ledger),
        "journey": _journey(storage, now, journey),
        "delivery": _delivery(storage, approvals, broker, now, days),
        "segments": _segments(storage, ruleset, now),
        "uplift": _uplift(ledger, ruleset),
    }


def _segments(storage: Storage, ruleset: RuleSet | None, now: datetime) -> dict[str, Any]:
    segments = (ruleset.segments if ruleset is not None else None) or DEFAULT_SEGMENTS
    customers = (entity_to_customer(e) for e in storage.table(CUSTOMERS).query())
    return count_segments(customers, segments, now.date()).to_dict(segments.labels)


def _uplift(ledger: OpportunityLedger, ruleset: RuleSet | None) -> dict[str, Any]:
    rows = (row for row in ledger.scan(["rule", "customer_id", "arm", "status", "amount"])
            if row.get("arm") in (TREATMENT, CONTROL))
    holdouts = {rule.id: rule.holdout for rule in ruleset.rules if rule.holdout} if ruleset is not None else {}
    return uplift_by_rule(rows, holdouts)


def _opportunities(ledger: OpportunityLedger) -> dict[str, Any]:
    rows = ledger.scan(["kind", "rule", "owner_name", "owner_email", "status", "month", "amount", "campaign"])
    by = {name: Counter() for name in ("kind", "owner", "status", "month")}
    outcome: dict[str, Counter] = defaultdict(Counter)
    earned: Counter = Counter()
    campaigns: dict[str, _Tally] = defaultdict(_Tally)
    rules: dict[str, _Tally] = defaultdict(_Tally)
    total = 0
    for row in rows:
        total += 1
        kind, status = row.get("kind") or "(none)", row.get("status") or "(none)"
        month = row.get("month") or "(none)"
        amount = stored_amount(row.get("amount")) if status == WON else 0.0
        by["kind"][kind] += 1
        by["owner"][row.get("owner_name") or row.get("owner_email") or "(unassigned)"] += 1
        by["status"][status] += 1
        by["month"][month] += 1
        if status in (WON, LOST):
            outcome[kind][status] += 1
        earned[kind] += amount
        rule = row.get("rule") or "(none)"
        rules[rule].add(status, month, amount, kind=kind, campaign=row.get("campaign"))
        if kind == "campaign":
            campaigns[row.get("campaign") or rule].add(status, month, amount, rule=rule)
    conversion = {
        kind: {"won": counts[WON], "lost": counts[LOST],
               "rate": round(counts[WON] / (counts[WON] + counts[LOST]), 3), "amount_won": earned[kind]}
        for kind, counts in sorted(outcome.items())}
    return {
        "total": total,
        "by_kind": dict(by["kind"].most_common()), "by_owner": dict(by["owner"].most_common()),
        "by_status": dict(by["status"].most_common()), "by_month": dict(sorted(by["month"].items())),
        "conversion": conversion, "amount_won": sum(earned.values()),
        "campaigns": {campaign: tally.to_dict() for campaign, tally in sorted(campaigns.items())},
        "rules": {rule: tally.to_dict() for rule, tally in sorted(rules.items())},
    }


class _Tally:
    """Opportunities, won, lost and revenue won of one campaign or rule, in all and per month of detection."""

    def __init__(self) -> None:
        self.total: Counter = Counter()
        self.months: dict[str, Counter] = defaultdict(Counter)
        self.labels: dict[str, Any] = {}
        self.rules: set[str] = set()

    def add(self, status: str, month: str, amount: float, *, rule: str | None = None, **labels: Any) -> None:
        for counts in (self.total, self.months[month]):
            counts["opportunities"] += 1
            counts[status] += 1
            counts["revenue_won"] += amount
        self.labels.update({k: v for k, v in labels.items() if v is not None or k not in self.labels})
        if rule:
            self.rules.add(rule)

    @staticmethod
    def _counts(counts: Counter) -> dict[str, Any]:
        return {"opportunities": counts["opportunities"], "won": counts[WON], "lost": counts[LOST],
                "revenue_won": counts["revenue_won"]}

    def to_dict(self) -> dict[str, Any]:
        data = {**self.labels, **self._counts(self.total)}
        data["revenue"] = data["revenue_won"]  # the name the first dashboard used
        if self.rules:
            data["rules"] = sorted(self.rules)
        data["by_month"] = {month: self._counts(c) for month, c in sorted(self.months.items())}
        return data


def _journey(storage: Storage, now: datetime, journey: Journey | None = None) -> dict[str, Any]:
    """Customers per stage; from `JourneyHistory`: transitions per edge in the last 30 days, median days spent in
    each stage (completed stays) and customers in a stage longer than its `sla_days`."""
    order = journey.state_ids if journey is not None else JOURNEY_STAGES
    current: dict[str, str] = {}
    stages: Counter = Counter()
    for row in storage.table(CUSTOMERS).query(select=["RowKey", "stage"]):
        stage = row.get("stage") or "(none)"
        stages[stage] += 1
        if row.get("stage"):
            current[row["RowKey"]] = stage
    ordered = {stage: stages.pop(stage, 0) for stage in order}
    ordered.update(sorted(stages.items()))
    since = now - timedelta(days=TRANSITION_DAYS)
    edges: Counter = Counter()
    stays: dict[str, list[float]] = defaultdict(list)
    entered: dict[str, tuple[str, datetime]] = {}  # customer → (stage, when) of its latest step
    rows = storage.table(JOURNEY_HISTORY).query(select=["PartitionKey", "RowKey", "from_stage", "to_stage", "at"])
    for row in sorted(rows, key=lambda r: (r["PartitionKey"], r["RowKey"])):
        customer, at, target = row["PartitionKey"], row.get("at"), row.get("to_stage")
        if not isinstance(at, datetime) or not target:
            continue
        if at >= since:
            edges[f"{row.get('from_stage') or '(start)'}→{target}"] += 1
        previous = entered.get(customer)
        if previous is not None:
            stays[previous[0]].append((at - previous[1]).total_seconds() / 86400)
        entered[customer] = (target, at)
    sla = {state.id: state.sla_days for state in journey.states if state.sla_days} if journey is not None else {}
    past_sla: Counter = Counter()
    for customer, (stage, at) in entered.items():
        if current.get(customer) == stage and stage in sla and now - at > timedelta(days=sla[stage]):
            past_sla[stage] += 1
    return {
        "stages": ordered,
        "transitions_days": TRANSITION_DAYS,
        "transitions": dict(edges.most_common()),
        "median_days": {stage: round(median(stays[stage]), 1) if stays.get(stage) else None for stage in order},
        "sla_days": sla,
        "past_sla": {stage: past_sla[stage] for stage in sla},
        "past_sla_total": sum(past_sla.values()),
    }


def _delivery(storage: Storage, approvals: ApprovalStore, broker: Broker, now: datetime,
              days: int) -> dict[str, Any]:
    since = f"audit-{now - timedelta(days=days - 1):%Y%m%d}"
    rows = storage.table(DELIVERIES).query("PartitionKey ge @since and PartitionKey le @until",
                                           {"since": since, "until": f"audit-{now:%Y%m%d}"},
                                           select=["channel", "status"])
    outcomes: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        outcomes[row.get("channel") or "(none)"][row.get("status") or "(none)"] += 1
    queues = (SWEEP_SHARDS, CRM_EVENTS, *CHANNEL_QUEUES.values())
    return {
        "days": days,
        "outcomes": {channel: dict(counts) for channel, counts in sorted(outcomes.items())},
        "dead_letters": {queue: len(broker.peek_dead_letters(queue, DLQ_PEEK_LIMIT)) for queue in queues},
        "approvals_pending": approvals.count_pending(now),  # expired ones wait only for housekeeping
    }

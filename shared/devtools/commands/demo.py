"""crmflow demo: the whole flow on a fresh local stack.

Writes the sample customers pinned to today (their birthdays, anniversaries and renewal windows fall on today's
daily sweep, 00:00 UTC = 09:00 in Tokyo), imports them, moves one new customer along the customer-success journey
with CRM change events, runs that sweep, delivers what it planned through the very
queue functions registered on the FunctionApp (Teams and Outlook to the local outbox, CRM tasks to the local Tasks
table) and prints what happened per rule, channel and owner. Approvals open today, so the review and unsubscribe
links it prints work with `crmflow serve` for APPROVAL_TTL_DAYS. Then closes the loop: a rep answers a card, the
CRM reports a won campaign deal (delivered twice, counted once), a won and a lost cross-sell deal, and the campaign
and rule revenue the dashboard shows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared.broker.local import LocalBroker
from shared.broker.port import OutgoingMessage
from shared.container import Container, set_container
from shared.customers.importer import display_width, format_summary, import_customers, summarize
from shared.dashboard.report import build_dashboard
from shared.delivery.transports import list_outbox
from shared.devtools.commands._local import local_dir_setting, local_stack
from shared.devtools.commands.sweep import format_report, run_sweep
from shared.devtools.progress import Progress
from shared.devtools.sample_data import DEMO_NOW, sweep_instant, write_samples
from shared.domain.events import CrmEvent
from shared.domain.names import CRM_EVENTS, TASKS
from shared.domain.signing import outcome_url
from shared.domain.vocabulary import ApprovalStatus
from shared.journeys.history import journey_view
from shared.opportunities import outcomes as rep_outcomes
from shared.opportunities.ledger import Opportunity
from shared.pipeline.changes import handle_crm_event


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run the whole flow locally on the sample customers",
                                   description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep earlier local data instead of starting fresh")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    local_dir = local_dir_setting()
    if not args.keep:
        for name in ("azurite", "outbox"):
            shutil.rmtree(local_dir / name, ignore_errors=True)
        for leftover in local_dir.glob("broker.sqlite3*"):
            leftover.unlink()
    instant = sweep_instant(datetime.now(UTC))
    customers_csv, purchases_csv = write_samples(directory=local_dir / "samples", now=instant)
    with local_stack(embedded=True) as container:
        if "TEAMS_DELIVERY_MODE" not in os.environ:  # the demo shows reps' daily digests unless told otherwise
            container.settings = container.settings.replace(teams_delivery_mode="digest")
        clock = _fast_forward(container, instant)
        print(f"== 1. import the sample customers, pinned to {instant.date().isoformat()}: {customers_csv} + "
              f"{purchases_csv.name}")
        report = import_customers(container.customers, customers_csv, purchases_path=purchases_csv,
                                  today=instant.date(), progress=Progress("importing"))
        print(f"imported {report.imported:,} customers, {report.rejected} rows rejected, "
              f"{len(report.warnings)} kept with an address no mail can go to")
        customers = list(container.customers.iter_all())
        print(format_summary(summarize(customers), len(customers)))

        print("\n== 2. journey: CRM change events for a new subscription deal (open, then won and delivered)")
        _journey_events(container, instant)
        print(_journey(container))
        print(f"\n== 2b. daily sweep at {instant.isoformat()} (09:00 in Tokyo; each customer's own local date)")
        plan = run_sweep(container, instant, progress=Progress("sweeping shards", total=64))
        print(format_report(plan))
        print(_journey(container))

        print("\n== 3. delivery through the registered queue functions (local outbox, local Tasks table)")
        outcomes = deliver_all(container, clock)
        print("  " + ", ".join(f"{name} {count}" for name, count in sorted(outcomes.items())))
        failed = sum(count for name, count in outcomes.items() if name.endswith("failed"))

        print("\n== 4. what happened")
        print(_report(container))

        print("\n== 5. outcomes: a rep answers a card, the CRM reports deals, revenue per campaign and rule")
        print(_outcomes(container))

        # "This month" on the KPI cards is the month of the demo's sweep (the clock may have moved on).
        snapshot = container.dashboard.refresh(datetime.fromtimestamp(container.clock(), UTC), month_of=instant)
        print(f"\n== 6. dashboard: snapshot of {snapshot.ledger_rows:,} opportunities, {snapshot.open_items:,} open "
              "in the work list")
        print(f"  run `crmflow serve` (or `make serve`), then open {dashboard_url(container.settings)}")
    return 0 if not (report.errors or failed) else 1


JOURNEY_CUSTOMER = "C-JOURNEY"


def _journey_events(container: Container, instant: datetime) -> None:
    """Two change events as the generic webhook queues them; the onboarding date has passed, so the sweep that
    follows moves the customer on once more."""
    deal = {"id": "D-JOURNEY", "type": "subscription_new", "stage": "open", "amount": 600000,
            "onboarding_due": (instant - timedelta(days=3)).date().isoformat(),
            "renewal_notice_date": (instant + timedelta(days=300)).date().isoformat()}
    records = [
        {"id": JOURNEY_CUSTOMER, "name": "株式会社ジャーニー", "contact_name": "山田 太郎",
         "email": "journey@example.co.jp", "owner": {"name": "鈴木 健", "email": "ken.suzuki@contoso.com"},
         "locale": "ja-JP", "timezone": "Asia/Tokyo", "deals": [deal]},
        {"id": JOURNEY_CUSTOMER, "deals": [{"id": "D-JOURNEY", "stage": "delivered"}]},
    ]
    for number, record in enumerate(records, 1):
        at = instant - timedelta(days=20 - number)
        event = CrmEvent(source="generic", entity="customer", record_id=JOURNEY_CUSTOMER, operation="update",
                         event_id=f"demo-journey-{number}", occurred_at=at, record=record, received_at=at)
        handle_crm_event(container.customers, container.evaluator, container.planner, event, at,
                         journeys=container.journeys)


def _journey(container: Container) -> str:
    view = journey_view(container.customers, container.journey_history, JOURNEY_CUSTOMER)
    lines = [f"  {JOURNEY_CUSTOMER} is in {view['stage']} (since {view['since']}); "
             "GET /api/customers/C-JOURNEY/journey shows:"]
    for step in view["history"]:
        due = f", due {step['due']}" if step.get("due") else ""
        lines.append(f"    {step['at'][:16]}  {step['from'] or '(start)':>14} → {step['to']:<14} {step['cause']}{due}")
    return "\n".join(lines)


def dashboard_url(settings) -> str:
    """Where `crmflow serve` answers the dashboard page (with the key when the local host requires one)."""
    url = f"{settings.public_base_url}/api/dashboard"
    return f"{url}?code=<FUNCTIONS_KEY>" if settings.functions_key else url


MAX_FAST_FORWARD_DAYS = 7  # a weekend and a long holiday between the sweep and the next business hours


class DemoClock:
    """The real clock plus an offset the demo moves on, so that emails scheduled into each customer's business
    hours (New York's morning is hours after Tokyo's; a Saturday's mails wait for Monday) become due. Links keep
    working when read on the real clock later: tokens only ever expire after the instant they were signed."""

    def __init__(self, offset: float = 0.0):
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


def _fast_forward(container: Container, instant: datetime = DEMO_NOW) -> DemoClock:
    """Broker and senders on a clock at least at the end of the sweep's day (set before anything captures it)."""
    clock = DemoClock(max(0.0, (instant + timedelta(days=1)).timestamp() - time.time()))
    container.clock = clock
    container.broker = LocalBroker(container.settings.local_dir / "broker.sqlite3", clock=clock)
    return clock


def deliver_all(container: Container, clock: DemoClock | None = None) -> Counter:
    """Drain every queue the app has a function for, until nothing is left (follow-ups included). With a demo
    `clock`, messages still scheduled move it on a day at a time (at most MAX_FAST_FORWARD_DAYS) until they are due."""
    # The local host and the FunctionApp bring azure.functions: loaded for this command only, like `serve`.
    import function_app
    from devhost import LocalHost

    host = LocalHost(function_app.app, container, port=0)
    outcomes: Counter = Counter()
    set_container(container)  # the functions reach the stack through get_container(), as under the host
    try:
        for day in range(MAX_FAST_FORWARD_DAYS + 1 if clock else 1):
            if day:
                if not any(container.broker.count(fn.queue) for fn in host.functions.queues):
                    break
                clock.offset += 86400.0
            busy = True
            while busy:
                busy = False
                for fn in host.functions.queues:
                    while batch := container.broker.receive(fn.queue, max_messages=50):
                        busy = True
                        for message in batch:
                            outcomes[f"{fn.name} {'ok' if host.deliver(fn, message) else 'failed'}"] += 1
    finally:
        set_container(None)
    return outcomes


def _cards_per_rep(container: Container, opportunities, outbox: list[dict]) -> str:
    """Teams cards each rep got, against one card per opportunity (what instant mode sends)."""
    before = Counter(o.owner_email for o in opportunities for a in o.actions
                     if a.get("channel") == "teams" and a.get("status") == "planned" and o.owner_email)
    after: Counter = Counter()
    for row in outbox:
        if row["channel"] == "teams":
            to = json.loads(Path(row["path"]).read_text(encoding="utf-8")).get("to", "")
            if "@" in to:
                after[to] += 1
    mode = container.settings.teams_delivery_mode
    busiest = before.most_common(1)[0] if before else ("", 0)
    return (f"  Teams cards to reps ({mode} mode): {sum(after.values())} sent, against {sum(before.values())} "
            f"with one card per opportunity; busiest rep {after[busiest[0]]} instead of {busiest[1]} "
            f"({len(before)} reps)")


def _approvals(container: Container) -> str:
    """How many held messages wait for their owner, and one review link (the Teams cards carry the others)."""
    pending = sorted(container.approval_store.query(ApprovalStatus.PENDING), key=lambda approval: approval.id)
    line = f"  approvals pending: {len(pending)}"
    if pending:
        now = datetime.fromtimestamp(container.clock(), UTC)
        line += f"\n  review one: {container.approvals.link(pending[0].id, now)}"
    return line


def _report(container: Container) -> str:
    opportunities = list(container.ledger.iter_all())
    lines = []
    table = Counter((o.rule, o.status) for o in opportunities)
    rules = sorted({rule for rule, _ in table})
    statuses = sorted({status for _, status in table})
    width = max(len(r) for r in rules)
    lines.append(f"  {'opportunities per rule':<{width}}  " + "  ".join(f"{s:>14}" for s in statuses))
    for rule in rules:
        lines.append(f"  {rule:<{width}}  " + "  ".join(f"{table[(rule, s)] or '':>14}" for s in statuses))
    owners = Counter(o.owner_name or "(none)" for o in opportunities)
    lines.append("  per owner: " + ", ".join(f"{name} {count}" for name, count in owners.most_common()))
    outbox = list_outbox(container.settings.local_dir / "outbox")
    channels = Counter(row["channel"] for row in outbox)
    tasks = sum(1 for _ in container.storage.table(TASKS).query(select=["RowKey"]))
    lines.append("  delivered: " + ", ".join(f"{channel} {count}" for channel, count in sorted(channels.items()))
                 + f", CRM tasks {tasks}")
    for channel in sorted(channels):
        sample = next(row for row in outbox if row["channel"] == channel)
        subject = sample["subject"][:60]
        lines.append(f"  e.g. {sample['path']}\n       {subject}{' ' * max(0, 2 - display_width(subject))}")
    lines.append(_cards_per_rep(container, opportunities, outbox))
    lines.append(_approvals(container))
    lines.append(f"  open them: {container.settings.local_dir / 'outbox'}  (crmflow outbox lists them; "
                 "crmflow serve answers the unsubscribe and approval links)")
    return "\n".join(lines)


def _outcomes(container: Container) -> str:
    """Outcomes through the real paths: the rep's decision as the outcome page records it, CRM deals through the
    `crm_event` function (a redelivered won deal counts once), then the dashboard's revenue."""
    now = datetime.fromtimestamp(container.clock(), UTC)
    rules = {rule.id: rule for rule in container.ruleset.rules}
    opportunities = sorted(container.ledger.iter_all(), key=lambda o: o.id)
    converting = [o for o in opportunities if o.is_open and rules.get(o.rule) and rules[o.rule].converts_on]
    campaign = next((o for o in opportunities if o.is_open and o.campaign), None)
    lines: list[str] = []
    if converting:
        clicked = converting[0]
        rep_outcomes.record(container.ledger, clicked.id, rep_outcomes.RepDecision("in_progress"), now,
                            clicked.owner_email)
        lines.append(f"  rep clicked 'in progress' on {clicked.rule} for {clicked.customer_id}; the card's link "
                     f"(crmflow serve answers it):\n    {outcome_url(container.settings, clicked.id, now)}")
    closed_on = now.date().isoformat()
    deals: list[tuple[Opportunity, CrmEvent]] = []
    if campaign:
        deals.append((campaign, _deal_event(campaign.customer_id, "D-DEMO-CMP", "won", 300000, "SUBDISPLAY",
                                            campaign.campaign, closed_on, now)))
    for opportunity, stage, amount in zip(converting[:2], ("won", "lost"), (480000, None), strict=False):
        product = rules[opportunity.rule].converts_on.product
        deals.append((opportunity, _deal_event(opportunity.customer_id, f"D-DEMO-{stage.upper()}", stage, amount,
                                               product, None, closed_on, now)))
    messages = [OutgoingMessage(body=event.to_json(), message_id=f"demo-{event.event_id}") for _, event in deals]
    if deals and deals[0][0].campaign:  # the CRM retried the campaign deal: a second delivery of the same event
        messages.append(OutgoingMessage(body=deals[0][1].to_json(), message_id=f"demo-{deals[0][1].event_id}~again"))
    if messages:
        container.broker.publish(CRM_EVENTS, messages)
        deliver_all(container)
    for opportunity, event in deals:
        after = container.ledger.get(opportunity.id)
        amount = f"{after.amount:,.0f}" if after.amount is not None else "-"
        lines.append(f"  CRM deal {event.record_id} ({event.record['deal']['stage']}) → {after.rule} for "
                     f"{after.customer_id}: {after.status}, amount {amount}, source {after.outcome_source}")
    report = build_dashboard(container.storage, container.ledger, container.approval_store, container.broker, now)
    for name, row in report["opportunities"]["campaigns"].items():
        lines.append(f"  campaign {name}: {row['opportunities']} opportunities, {row['won']} won, {row['lost']} lost, "
                     f"revenue won {row['revenue_won']:,.0f} (the deal arrived twice, counted once)")
    won_rules = {rule: row for rule, row in report["opportunities"]["rules"].items() if row["won"] or row["lost"]}
    for rule, row in sorted(won_rules.items()):
        lines.append(f"  rule {rule}: {row['won']} won, {row['lost']} lost, revenue won {row['revenue_won']:,.0f}")
    lines.append("  every outcome: GET /api/opportunities?status=won (deal_id, amount, outcome_source, decided_at)")
    return "\n".join(lines)


def _deal_event(customer_id: str, deal_id: str, stage: str, amount: float | None, product: str,
                campaign: str | None, closed_on: str, now: datetime) -> CrmEvent:
    deal = {"id": deal_id, "stage": stage, "amount": amount, "closed_on": closed_on}
    if campaign:
        deal["campaign_id"] = campaign
    return CrmEvent(source="generic", entity="deal", record_id=deal_id, operation="update",
                    event_id=f"{deal_id}-{stage}", occurred_at=now, received_at=now,
                    record={"customer_id": customer_id, "deal": deal, "purchase": {"product": product}})

"""A holdout rule over the demo data, end to end: the sweep holds out its control group (recorded, nothing sent),
deals are won in both groups through the ledger, and the dashboard's uplift is what a hand calculation gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.container import Container
from shared.customers.importer import import_customers
from shared.dashboard.report import build_dashboard
from shared.devtools.sample_data import DEMO_NOW
from shared.domain.names import TEAMS
from shared.opportunities.ledger import HELD_OUT, LOST, SUPPRESSED, WON
from shared.pipeline.planner import summarize_reports
from shared.pipeline.sweep import ShardTask, evaluate_shard
from shared.segments.holdout import CONTROL, TREATMENT, arm_of
from shared.web.dashboard_page import uplift_row
from tests.conftest import make_settings

ROOT = Path(__file__).parent.parent.parent
RULE = "cross-sell-holdout"


@pytest.fixture
def swept(azurite, tmp_path) -> Container:
    container = Container(make_settings(tmp_path, TABLES_CONNECTION_STRING=azurite.connection_string,
                                        RULES_DIR=str(ROOT / "tests" / "fixtures" / "rules_holdout")))
    container.tables.ensure_tables()
    report = import_customers(container.customers, ROOT / "samples" / "customers.csv",
                              purchases_path=ROOT / "samples" / "purchases.csv")
    assert report.imported == 260
    summarize_reports(evaluate_shard(container.customers, container.evaluator, container.planner,
                                     ShardTask(shard, DEMO_NOW)) for shard in range(container.settings.customer_shards))
    return container


def test_a_holdout_rule_over_the_demo_data_measures_uplift_as_computed_by_hand(swept):
    ledger = swept.ledger
    rows = ledger.query(rule=RULE, limit=1000)
    assert all(o.arm == arm_of(RULE, o.customer_id, 0.5) for o in rows)  # the stable hash split
    # Customers whose rep has no usable address could not have been told in either arm: suppressed in both,
    # left out of the comparison.
    unreachable = [o for o in rows if o.status == SUPPRESSED]
    assert {o.arm for o in unreachable} == {TREATMENT, CONTROL}
    reachable = [o for o in rows if o.status != SUPPRESSED]
    arms = {arm: sorted((o for o in reachable if o.arm == arm), key=lambda o: o.customer_id)
            for arm in (TREATMENT, CONTROL)}
    assert (len(arms[TREATMENT]), len(arms[CONTROL])) == (127, 130)
    assert {o.status for o in arms[CONTROL]} == {HELD_OUT}
    assert HELD_OUT not in {o.status for o in arms[TREATMENT]}
    assert swept.broker.count(TEAMS) == 127  # one card per treated customer, none for the held out

    # Deals won in both groups (and a few lost), recorded on the opportunities as outcomes are.
    for o in arms[TREATMENT][:30]:
        ledger.set_status(o.id, WON, DEMO_NOW, amount=200_000)
    for o in arms[TREATMENT][30:35]:
        ledger.set_status(o.id, LOST, DEMO_NOW)
    for o in arms[CONTROL][:15]:
        ledger.set_status(o.id, WON, DEMO_NOW, amount=100_000)
    assert {ledger.get(o.id).arm for o in arms[CONTROL]} == {CONTROL}  # the arm outlives the outcome

    data = build_dashboard(swept.storage, ledger, swept.approval_store, swept.broker, DEMO_NOW,
                           ruleset=swept.ruleset)
    uplift = data["uplift"][RULE]
    assert uplift["status"] == "ok" and uplift["holdout"] == 0.5
    assert uplift["treatment"] == {"customers": 127, "converted": 30, "conversion_rate": round(30 / 127, 6),
                                   "revenue": 6_000_000.0, "revenue_per_customer": 47_244.09}
    assert uplift["control"] == {"customers": 130, "converted": 15, "conversion_rate": round(15 / 130, 6),
                                 "revenue": 1_500_000.0, "revenue_per_customer": 11_538.46}
    # By hand (z = 1.959964; Wilson: (p + z²/2n ± z√(p(1−p)/n + z²/4n²)) / (1 + z²/n)):
    #   p1 = 30/127 = 0.236220, Wilson (0.170773, 0.317157); p2 = 15/130 = 0.115385, Wilson (0.071184, 0.181664)
    #   d = 0.120836; lower = d − √((p1 − l1)² + (u2 − p2)²) = 0.120836 − √(0.065447² + 0.066279²) = 0.027689
    #                 upper = d + √((u1 − p1)² + (p2 − l2)²) = 0.120836 + √(0.080936² + 0.044201²) = 0.213055
    conversion = uplift["conversion_uplift"]
    assert conversion["difference"] == pytest.approx(0.120836, abs=1e-6)
    assert conversion["ci95"] == pytest.approx([0.027689, 0.213055], abs=2e-6)
    # Revenue per customer, Welch: treatment 30 × 200,000 in 127 (mean 47,244.09, s² = 7,274,090,739), control
    # 15 × 100,000 in 130 (mean 11,538.46, s² = 1,028,622,540); se = √(s1²/127 + s2²/130) = 8,073.96,
    # df = 160.2, t(0.975, 160) = 1.9749 (table) → 35,705.63 ± 15,945 = [19,760, 51,651].
    revenue = uplift["revenue_uplift_per_customer"]
    assert revenue["difference"] == pytest.approx(35_705.63, abs=0.01)
    assert revenue["ci95"] == pytest.approx([19_760, 51_651], abs=2)
    assert uplift_row(RULE, uplift)[4] == "+12.1% [+2.8%, +21.3%]"  # as the dashboard page shows it
    assert sum(data["segments"]["by_label"].values()) == 260 == data["segments"]["customers"]



def test_a_crm_deal_is_attributed_to_a_held_out_firing_as_to_a_sent_one(swept):
    """The CRM attribution finds the control group's opportunities too (held_out is open for an outcome)."""
    from datetime import date

    from shared.opportunities.attribution import ClosedDeal, attribute

    rows = swept.ledger.query(rule=RULE, limit=1000)
    held = next(o for o in rows if o.status == HELD_OUT)
    sent = next(o for o in rows if o.arm == TREATMENT and o.status != SUPPRESSED)
    for number, opportunity in enumerate((held, sent)):
        customer = swept.customers.get(opportunity.customer_id).customer
        deal = ClosedDeal(f"D-HOLDOUT-{number}", WON, 150_000.0, "B", None, date(2026, 12, 1))
        answered = attribute(swept.ledger, swept.ruleset, customer, deal, "zoho", DEMO_NOW)
        assert answered is not None and answered.id == opportunity.id
        assert (answered.status, answered.amount, answered.deal_id) == (WON, 150_000.0, f"D-HOLDOUT-{number}")
        assert answered.arm == opportunity.arm

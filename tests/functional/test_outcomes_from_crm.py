"""Outcomes from the CRM through the registered `crm_event` function: a won deal closes the opportunity it answers,
raises its campaign's revenue by the deal's amount exactly once (redelivered too), and a rep's click racing it ends
in the documented state (the CRM's outcome)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from azure.functions.servicebus import ServiceBusMessage

from functions.pipeline import crm_event
from shared.container import Container, set_container
from shared.dashboard.report import build_dashboard
from shared.domain.errors import Conflict
from shared.domain.events import CrmEvent
from shared.domain.model import Customer
from shared.opportunities.ledger import CRM, REP, WON
from tests.conftest import FIXTURES, make_settings

NOW = datetime(2026, 4, 1, 1, tzinfo=UTC)
CUSTOMER = {"id": "zc-1", "name": "株式会社サンプル", "products": ["A", "PC"], "locale": "ja-JP",
            "owner": {"name": "佐藤 花子", "email": "hanako@contoso.com"}}


@pytest.fixture
def planned(azurite, tmp_path):
    settings = make_settings(tmp_path, TABLES_CONNECTION_STRING=azurite.connection_string,
                             RULES_DIR=str(FIXTURES / "rules_outcomes"))
    container = Container(settings)
    container.tables.ensure_tables()
    customer = Customer.from_dict(CUSTOMER)
    container.customers.put(customer, None)
    firings = container.evaluator.evaluate(customer, now=NOW, trigger="sweep")
    container.planner.plan([(customer, f) for f in firings], NOW)
    set_container(container)
    yield container
    set_container(None)


def deliver(event: CrmEvent, message_id: str) -> None:
    crm_event(ServiceBusMessage(body=event.to_json().encode(), message_id=message_id, delivery_count=1,
                                enqueued_time_utc=datetime.now(UTC), application_properties={},
                                user_properties={}))


def deal_event(deal_id: str, stage: str, *, amount=None, product=None, campaign=None, days_later=10,
               event_id=None) -> CrmEvent:
    when = NOW + timedelta(days=days_later)
    deal = {"id": deal_id, "stage": stage, "amount": amount, "campaign_id": campaign,
            "closed_on": when.date().isoformat()}
    record = {"customer_id": "zc-1", "deal": deal, **({"purchase": {"product": product}} if product else {})}
    return CrmEvent(source="zoho", entity="deal", record_id=deal_id, operation="update",
                    event_id=event_id or f"{deal_id}-{stage}", occurred_at=when, record=record, received_at=when)


def by_rule(container: Container) -> dict:
    return {o.rule: o for o in container.ledger.query(customer_id="zc-1")}


def campaign_revenue(container: Container) -> dict:
    report = build_dashboard(container.storage, container.ledger, container.approval_store, container.broker, NOW)
    json.dumps(report, allow_nan=False)  # valid JSON, always
    return report["opportunities"]["campaigns"]["CMP-1"]


def test_a_won_campaign_deal_counts_its_amount_exactly_once(planned):
    assert campaign_revenue(planned)["revenue_won"] == 0
    won = deal_event("D-1", "won", amount=300000, product="SUBDISPLAY", campaign="CMP-1")
    for attempt in range(3):  # the CRM's retry, Service Bus redelivery
        deliver(won, f"zoho:D-1-won~{attempt}")
    revenue = campaign_revenue(planned)
    assert (revenue["won"], revenue["revenue_won"], revenue["opportunities"]) == (1, 300000.0, 1)
    assert revenue["by_month"]["2026-04"]["revenue_won"] == 300000.0 and revenue["rules"] == ["spring-pc"]
    campaign = by_rule(planned)["spring-pc"]
    assert (campaign.status, campaign.deal_id, campaign.outcome_source, campaign.decided_by) == \
        (WON, "D-1", CRM, "crm:zoho")
    # Another deal for the same campaign does not count against the opportunity D-1 answered.
    deliver(deal_event("D-2", "won", amount=999, product="SUBDISPLAY", campaign="CMP-1"), "zoho:D-2")
    assert campaign_revenue(planned)["revenue_won"] == 300000.0
    # The cross-sell was not touched by campaign deals.
    assert by_rule(planned)["a-to-b"].deal_id is None


def test_converts_on_product_within_days(planned):
    deliver(deal_event("D-7", "won", amount=5000, product="B", days_later=120), "zoho:late")
    assert by_rule(planned)["a-to-b"].deal_id is None  # too late to be this opportunity's answer
    deliver(deal_event("D-8", "lost", product="B", days_later=20), "zoho:lost")
    cross = by_rule(planned)["a-to-b"]
    assert (cross.status, cross.deal_id, cross.outcome_source) == ("lost", "D-8", CRM)
    report = build_dashboard(planned.storage, planned.ledger, planned.approval_store, planned.broker, NOW)
    assert report["opportunities"]["rules"]["a-to-b"]["lost"] == 1


def test_a_reps_click_and_the_crm_racing_end_with_the_crms_outcome(planned):
    cross = by_rule(planned)["a-to-b"]
    planned.ledger.record_outcome(cross.id, WON, source=REP, now=NOW, amount=1, by="hanako@contoso.com")
    deliver(deal_event("D-9", "won", amount=7000, product="B"), "zoho:D-9")
    final = planned.ledger.get(cross.id)
    assert (final.status, final.amount, final.outcome_source, final.deal_id) == (WON, 7000, CRM, "D-9")
    with pytest.raises(Conflict):  # a click after the CRM closed it
        planned.ledger.record_outcome(cross.id, "lost", source=REP, now=NOW)


def test_the_opportunities_api_shows_the_attribution(planned):
    import azure.functions as func

    from functions.opportunities import opportunities_list

    deliver(deal_event("D-1", "won", amount=300000, product="SUBDISPLAY", campaign="CMP-1"), "zoho:D-1")
    response = opportunities_list(func.HttpRequest("GET", "/api/opportunities",
                                                   params={"customer_id": "zc-1", "status": "won"}, body=b""))
    [item] = json.loads(response.get_body())["items"]
    assert (item["deal_id"], item["amount"], item["outcome_source"], item["campaign"]) == \
        ("D-1", 300000.0, "crm", "CMP-1")
    assert item["decided_at"] and item["decision"] == "won" and "etag" not in item

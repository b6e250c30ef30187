"""Each CRM's deal payloads (as the vendor documents them) with won, lost and open deals → the right purchases and
products: only won deals are purchases. Dataverse's Win / Lose / SetState messages close deals too."""

from __future__ import annotations

import pytest

from shared.crm.merge import apply_event
from shared.domain.model import Customer
from tests.crm_helpers import (
    dataverse_request,
    hubspot_request,
    parsing_intake,
    salesforce_request,
    sample,
    zoho_request,
)


@pytest.fixture
def intake(tmp_path):
    return parsing_intake(tmp_path)


def merged(events, customer_id: str, current: Customer | None = None) -> Customer:
    customer = current or Customer.from_dict({"id": customer_id, "products": ["A"]})
    for event in events:
        customer = apply_event(customer, event)
    return customer


def check_won_lost_open(customer: Customer, won: str, lost: str, open_: str, open_stage: str) -> None:
    stages = {d.id: d.stage for d in customer.deals}
    assert stages == {won: "won", lost: "lost", open_: open_stage}
    assert customer.products == ("A", "B")  # the won B; not the lost PC, not the open D
    assert [(p.product, p.deal_id, p.amount) for p in customer.purchases] == [("B", won, 1200000)]
    assert customer.annual_spend == 1200000


def test_zoho_deals(intake):
    events = intake.parse("zoho", zoho_request(sample("zoho_deals_notification.json")))
    customer = merged(events, "zc-5725767000000524157")
    check_won_lost_open(customer, "5725767000000700002", "5725767000000700001", "5725767000000700003",
                        "Negotiation/Review")
    assert next(d for d in customer.deals if d.stage == "won").campaign_id == "5725767000000900001"


def test_hubspot_deals(intake):
    events = intake.parse("hubspot", hubspot_request(sample("hubspot_deal_events.json")))
    customer = merged(events, "hs-65059681032")
    check_won_lost_open(customer, "18023456789", "18023456790", "18023456791", "appointmentscheduled")


def test_salesforce_opportunities_use_is_won(intake):
    events = intake.parse("salesforce", salesforce_request(sample("salesforce_opportunities.xml")))
    customer = merged(events, "sf-003000000000001AAA")
    # The org's own stage name says nothing; IsWon/IsClosed do.
    check_won_lost_open(customer, "006000000000011AAA", "006000000000012AAA", "006000000000013AAA",
                        "Negotiation/Review")


@pytest.mark.parametrize(("fixture", "stage"), [
    ("dataverse_win.json", "won"), ("dataverse_lose.json", "lost"), ("dataverse_setstate.json", "lost"),
    ("dataverse_setstatedynamicentity.json", "won")])
def test_dataverse_closing_messages(intake, fixture, stage):
    [event] = intake.parse("dataverse", dataverse_request(sample(fixture)))
    assert (event.entity, event.operation, event.record_id) == ("deal", "update",
                                                               "0dd0e1f2-1234-4321-aaaa-bbbbccccdddd")
    assert event.record["deal"]["stage"] == stage and "deal.stage" in event.changed_fields
    # The customer the deal belongs to is not in these messages: the consumer re-queries the record.
    assert event.needs_refetch
    # The deal was known open, with its product: winning it makes the purchase; losing it does not.
    known = Customer.from_dict({"id": "c-1", "products": ["A"], "deals": [
        {"id": "0dd0e1f2-1234-4321-aaaa-bbbbccccdddd", "stage": "open", "product": "B"}]})
    customer = merged([event], "c-1", known)
    assert customer.deals[0].stage == stage
    assert customer.products == (("A", "B") if stage == "won" else ("A",))
    if fixture == "dataverse_win.json":
        assert customer.purchases[0].amount == 500000 and str(customer.purchases[0].date) == "2025-11-22"

"""Vendor payloads as the vendors publish them: Zoho Leads with affected_fields, Salesforce contacts with
FirstName/LastName and sObjects nobody mapped (acknowledged, skipped, logged), HubSpot merge events."""

from __future__ import annotations

import logging

import pytest

from shared.crm.merge import apply_event
from shared.domain.model import Customer
from tests.crm_helpers import hubspot_request, parsing_intake, salesforce_request, sample, zoho_request


@pytest.fixture
def intake(tmp_path):
    return parsing_intake(tmp_path)


def test_zoho_leads_with_affected_fields(intake):
    # The second lead changed only `Rating`, which nobody mapped: acknowledged without an event.
    [lead] = intake.parse("zoho", zoho_request(sample("zoho_leads_notification.json")))
    assert (lead.entity, lead.record_id, lead.extra["crm_entity"]) == ("customer", "5725767000000611001", "Leads")
    assert lead.record["contact_name"] == "Taro Yamada" and lead.record["name"] == "株式会社サンプル"
    assert lead.record["custom"]["lead_status"] == "Contacted"
    assert set(lead.changed_fields) == {"contact_name", "email", "custom.lead_status"}  # from affected_fields
    assert not lead.needs_refetch


def test_zoho_affected_fields_without_values_needs_a_refetch(intake):
    body = sample("zoho_leads_notification.json").replace(b'"affected_values"', b'"ignored_values"')
    [lead] = intake.parse("zoho", zoho_request(body))
    assert lead.needs_refetch and set(lead.changed_fields) == {"contact_name", "email", "custom.lead_status"}


def test_salesforce_first_and_last_name(intake):
    contact, _ = intake.parse("salesforce", salesforce_request(sample("salesforce_contact_first_last.xml")))
    assert contact.record["contact_name"] == "Taro Yamada" and "contact_name" in contact.changed_fields


def test_salesforce_unmapped_sobject_is_acknowledged_and_skipped(intake, caplog):
    with caplog.at_level(logging.INFO, logger="shared.crm.salesforce"):
        events = intake.parse("salesforce", salesforce_request(sample("salesforce_unmapped_sobject.xml")))
    assert [e.extra["crm_entity"] for e in events] == ["Contact", "Opportunity"]
    assert "sObject Lead acknowledged and skipped" in caplog.text
    assert "Suzuki" not in caplog.text and "Contoso" not in caplog.text  # no personal data in the log


def test_hubspot_merge_deletes_the_contacts_merged_away(intake):
    events = intake.parse("hubspot", hubspot_request(sample("hubspot_merge.json")))
    assert sorted((e.operation, e.record["id"]) for e in events) == [("delete", "hs-65059681032"),
                                                                    ("delete", "hs-65059681033")]
    assert {e.extra["merged_into"] for e in events} == {"hs-65059681040"}
    assert len({e.event_id for e in events}) == 2  # each its own broker message id
    merged_away = Customer.from_dict({"id": "hs-65059681033", "email": "old@example.com"})
    assert apply_event(merged_away, events[1]) is None

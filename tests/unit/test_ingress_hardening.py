"""Hostile webhook input: forged far-future times, unsigned meaning headers, XML tricks, dates out of range and
oversized text are refused (4xx) or defused, naming the field."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.crm.ingest import MAX_CLOCK_SKEW, WebhookIntake
from shared.crm.merge import apply_event
from shared.domain.errors import InvalidInput, Unauthorized
from shared.domain.model import MAX_TEXT_CHARS, Customer
from tests.conftest import make_settings
from tests.crm_helpers import (
    GENERIC_SECRET,
    NOW,
    SECRETS_ENV,
    dataverse_request,
    generic_request,
    salesforce_request,
    sample,
)


class NoBroker:
    def publish(self, queue, messages):  # pragma: no cover - would be a test bug
        raise AssertionError("parse() must not publish")


@pytest.fixture
def intake(tmp_path):
    return WebhookIntake(make_settings(tmp_path, **SECRETS_ENV), NoBroker(), clock=lambda: NOW)


FAR_FUTURE = "2999-01-01T00:00:00.000Z"


def forged_far_future(source: str):
    """The source's sample with its modification time moved to the year 2999."""
    if source == "salesforce":
        body = sample("salesforce_outbound.xml").replace(b"2025-11-22T08:00:00.000Z", FAR_FUTURE.encode())
        return salesforce_request(body)
    if source == "dataverse":
        body = sample("dataverse_contact_update.json").replace(b"/Date(1763798400000)/", b"/Date(32472144000000)/")
        return dataverse_request(body)
    body = json.loads(sample("generic_customer.json"))
    body["updated_at"] = "2999-01-01T00:00:00+00:00"
    return generic_request(json.dumps(body).encode())


@pytest.mark.parametrize("source", ["salesforce", "dataverse", "generic"])
def test_a_far_future_event_time_cannot_pin_the_record_against_later_updates(intake, source):
    forged = intake.parse(source, forged_far_future(source))[0]
    assert forged.occurred_at <= NOW + MAX_CLOCK_SKEW
    stamp = (forged.record or {}).get("updated_at")
    assert stamp is None or datetime.fromisoformat(stamp) <= NOW + MAX_CLOCK_SKEW

    stored = apply_event(None, forged)
    assert stored.updated_at <= NOW + MAX_CLOCK_SKEW
    # A legitimate change an hour later still wins.
    later = NOW + timedelta(hours=1)
    legit = replace(forged, event_id="later", occurred_at=later, received_at=later,
                    record={"id": stored.id, "email": "new@example.co.jp", "updated_at": later.isoformat()},
                    changed_fields=("email",))
    assert apply_event(stored, legit).email == "new@example.co.jp"


def test_a_small_clock_skew_is_kept(intake):
    body = json.loads(sample("generic_customer.json"))
    body["updated_at"] = (NOW + timedelta(minutes=2)).isoformat()
    [event] = intake.parse("generic", generic_request(json.dumps(body).encode()))
    assert event.occurred_at == NOW + timedelta(minutes=2)


# --- generic: everything that changes meaning is signed ------------------------------------------------------
def test_a_v1_signature_does_not_cover_operation_or_event_id(intake):
    captured = generic_request()  # v1: timestamp + "." + body
    assert intake.parse("generic", captured)[0].operation == "update"
    for header, value in (("X-Crmflow-Operation", "delete"), ("X-Crmflow-Event-Id", "evt-forged")):
        replayed = replace(captured, headers={**captured.headers, header.lower(): value})
        with pytest.raises(Unauthorized, match="v2"):
            intake.parse("generic", replayed)


def test_a_v2_signature_covers_operation_and_event_id(intake):
    signed = generic_request(**{"X-Crmflow-Operation": "update", "X-Crmflow-Event-Id": "evt-1"})
    assert signed.header("x-crmflow-signature").startswith("v2=")
    [event] = intake.parse("generic", signed)
    assert (event.operation, event.event_id) == ("update", "evt-1")
    for header, value in (("x-crmflow-operation", "delete"), ("x-crmflow-event-id", "evt-2")):
        tampered = replace(signed, headers={**signed.headers, header: value})
        with pytest.raises(Unauthorized, match="does not match"):
            intake.parse("generic", tampered)
    deleted = generic_request(**{"X-Crmflow-Operation": "delete"})
    assert intake.parse("generic", deleted)[0].operation == "delete"


def test_v2_signature_is_the_documented_string(intake):
    import hashlib
    import hmac

    body = sample("generic_customer.json")
    timestamp = str(int(NOW.timestamp()))
    content = b"v2\n" + timestamp.encode() + b"\ndelete\nevt-9\n" + body
    signature = "v2=" + hmac.new(GENERIC_SECRET.encode(), content, hashlib.sha256).hexdigest()
    request = generic_request(body, **{"X-Crmflow-Operation": "delete", "X-Crmflow-Event-Id": "evt-9"})
    request = replace(request, headers={**request.headers, "x-crmflow-signature": signature})
    assert intake.parse("generic", request)[0].operation == "delete"


# --- Salesforce XML --------------------------------------------------------------------------------------------
def test_a_utf16_body_with_a_dtd_is_refused_before_any_entity_is_expanded(intake):
    body = sample("salesforce_utf16_entities.xml")
    assert b"<!DOCTYPE" not in body  # UTF-16: a byte search never sees it
    with pytest.raises(InvalidInput, match="DTD"):
        intake.parse("salesforce", salesforce_request(body, **{"Content-Type": "text/xml; charset=utf-16"}))


# --- Dataverse dates ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["OperationCreatedOn", "modifiedon"])
def test_a_dataverse_date_out_of_range_is_bad_input_naming_the_field(intake, where):
    old = b"/Date(1763798400123+0000)/" if where == "OperationCreatedOn" else b"/Date(1763798400000)/"
    body = sample("dataverse_contact_update.json").replace(old, b"/Date(999999999999999)/")
    with pytest.raises(InvalidInput) as caught:
        intake.parse("dataverse", dataverse_request(body))
    assert caught.value.location.field == where


# --- oversized text -------------------------------------------------------------------------------------------
def test_an_oversized_name_is_refused_at_ingress_naming_the_field(intake):
    body = json.loads(sample("generic_customer.json"))
    body["name"] = "x" * 400_000
    with pytest.raises(InvalidInput) as caught:
        intake.parse("generic", generic_request(json.dumps(body).encode()))
    assert caught.value.location.field == "name" and "400,000" in caught.value.reason

    xml = sample("salesforce_outbound.xml").replace(b"taro@example.co.jp", b"t" * 300_000 + b"@example.co.jp")
    with pytest.raises(InvalidInput) as caught:
        intake.parse("salesforce", salesforce_request(xml))
    assert "email" in caught.value.location.field


def test_customer_text_fields_are_bounded_everywhere():
    Customer.from_dict({"id": "C-1", "name": "x" * MAX_TEXT_CHARS})
    for record, field in (({"id": "C-1", "name": "x" * (MAX_TEXT_CHARS + 1)}, "name"),
                          ({"id": "C-1", "owner": {"name": "y" * 10_000}}, "owner.name"),
                          ({"id": "C-1", "owner": "z" * 10_000}, "owner")):
        with pytest.raises(InvalidInput) as caught:
            Customer.from_dict(record)
        assert caught.value.location.field == field


def test_event_times_are_aware_even_when_the_sender_omits_the_zone(intake):
    body = json.loads(sample("generic_customer.json"))
    body["updated_at"] = "2999-01-01T00:00:00"
    [event] = intake.parse("generic", generic_request(json.dumps(body).encode()))
    assert event.occurred_at == NOW and event.occurred_at.tzinfo is UTC

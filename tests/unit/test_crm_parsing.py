"""Each CRM's documented payload becomes the right canonical events; bad input is refused with a reason."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.crm.common import ReplayGuard, WebhookRequest, message_id_for
from shared.crm.ingest import MAX_CLOCK_SKEW, WebhookIntake
from shared.crm.merge import apply_event
from shared.domain.errors import InvalidInput, NotFound, PayloadTooLarge, SourceNotEnabled, Unauthorized
from shared.domain.model import MAX_TEXT_CHARS, Customer
from tests.conftest import make_settings
from tests.crm_helpers import (
    GENERIC_SECRET,
    NOW,
    SECRETS_ENV,
    NoBroker,
    dataverse_request,
    generic_request,
    hubspot_request,
    parsing_intake,
    salesforce_request,
    sample,
    zoho_request,
)


@pytest.fixture
def intake(tmp_path):
    return parsing_intake(tmp_path)


# --- Dataverse -----------------------------------------------------------------------------------------------
def test_dataverse_update_maps_target_and_post_image(intake):
    [event] = intake.parse("dataverse", dataverse_request())
    assert (event.source, event.entity, event.operation) == ("dataverse", "customer", "update")
    assert event.record_id == "9c8b7a6d-1111-2222-3333-444455556666"
    assert event.event_id == "d4c3b2a1-aaaa-bbbb-cccc-ddddeeeeffff"  # OperationId
    record = event.record
    assert record["id"] == "9c8b7a6d-1111-2222-3333-444455556666"
    assert record["email"] == "taro@example.co.jp"
    assert record["birthday"] == "1980-11-22"  # /Date(ms)/ → date
    assert record["plan"] == "Basic"  # option set 1 → label
    assert record["annual_spend"] == 1200000  # Money
    assert record["contact_name"] == "山田 太郎"  # from the post image
    assert record["contract_end"] == "2026-02-15"
    assert record["contract_status"] == "active"
    assert record["custom"]["account_id"] == "aa11bb22-cc33-dd44-ee55-ff6677889900"
    assert record["custom"]["crm_owner_id"] == "3b2c5f0e-0000-0000-0000-000000000001"
    assert event.occurred_at == datetime(2025, 11, 22, 8, 0, tzinfo=UTC)  # modifiedon
    # Only Target columns count as changed; the owner is unknown to the map, so the consumer re-queries.
    assert set(event.changed_fields) == {"email", "birthday", "plan", "annual_spend", "owner", "updated_at"}
    assert event.needs_refetch and "owner" not in record
    assert event.extra["crm_entity"] == "contact"


def test_dataverse_owner_listed_in_the_map_resolves_without_refetch(tmp_path):
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    text = (sample("../../../mappings/dataverse.yaml")).decode()
    text = text.replace("owners: {}", 'owners:\n  "3b2c5f0e-0000-0000-0000-000000000001": '
                                      '{email: hanako@contoso.com, name: 佐藤 花子}')
    (mappings / "dataverse.yaml").write_text(text, encoding="utf-8")
    intake = WebhookIntake(make_settings(tmp_path), NoBroker(), clock=lambda: NOW, mappings_dir=mappings)
    [event] = intake.parse("dataverse", dataverse_request())
    assert event.record["owner"] == {"email": "hanako@contoso.com", "name": "佐藤 花子", "aad_object_id": None}
    assert not event.needs_refetch


def test_dataverse_opportunity_becomes_a_deal_naming_its_customer(intake):
    [event] = intake.parse("dataverse", dataverse_request(sample("dataverse_opportunity_win.json")))
    assert event.entity == "deal"
    assert event.record["customer_id"] == "9c8b7a6d-1111-2222-3333-444455556666"
    assert event.record["deal"] == {"id": "0dd0e1f2-1234-4321-aaaa-bbbbccccdddd", "stage": "won",
                                    "amount": 480000, "closed_on": "2025-11-22", "name": "製品B 導入",
                                    "type": "subscription_new"}
    assert event.record["purchase"] == {"amount": 500000, "product": "B"}
    # Synchronous steps send zero OperationId/RequestId: the id falls back to the correlation id.
    assert event.event_id.startswith("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d:0dd0e1f2")
    assert not event.needs_refetch


def test_dataverse_delete_and_size_exceeded(intake):
    [deleted] = intake.parse("dataverse", dataverse_request(sample("dataverse_contact_delete.json")))
    assert deleted.operation == "delete" and deleted.record == {"id": "9c8b7a6d-1111-2222-3333-444455556666"}
    [stripped] = intake.parse("dataverse", dataverse_request(
        sample("dataverse_contact_size_exceeded.json"), **{"x-ms-dynamics-msg-size-exceeded": "true"}))
    assert stripped.needs_refetch and stripped.record == {"id": "9c8b7a6d-1111-2222-3333-444455556666"}


@pytest.mark.parametrize(("change", "field"), [
    (lambda c: c.update(PrimaryEntityName="lead"), "PrimaryEntityName"),
    (lambda c: c.update(MessageName="Retrieve"), "MessageName"),
    (lambda c: c.update(PrimaryEntityId="not-a-guid"), "PrimaryEntityId"),
    (lambda c: c["InputParameters"][0]["value"]["Attributes"].append({"key": "birthdate", "value": "soon"}),
     "birthdate"),
    (lambda c: c["InputParameters"][0]["value"]["Attributes"].append(
        {"key": "crmflow_annualspend", "value": {"Value": "lots"}}), "crmflow_annualspend"),
    (lambda c: c["InputParameters"][0]["value"]["Attributes"].append({"key": "donotbulkemail", "value": "maybe"}),
     "donotbulkemail"),
    (lambda c: c.pop("InputParameters"), "Target"),
])
def test_dataverse_bad_input_names_the_field(intake, change, field):
    context = json.loads(sample("dataverse_contact_update.json"))
    change(context)
    with pytest.raises(InvalidInput) as caught:
        intake.parse("dataverse", dataverse_request(json.dumps(context).encode()))
    assert caught.value.location.field == field


def test_wrong_content_type_malformed_json_and_size(intake):
    with pytest.raises(InvalidInput, match="content type"):
        intake.parse("dataverse", dataverse_request(**{"Content-Type": "text/plain"}))
    with pytest.raises(InvalidInput, match="not valid JSON"):
        intake.parse("dataverse", dataverse_request(b'{"MessageName": '))
    with pytest.raises(PayloadTooLarge):
        intake.parse("dataverse", dataverse_request(b" " * (1024 * 1024 + 1)))
    with pytest.raises(InvalidInput, match="empty"):
        intake.parse("dataverse", dataverse_request(b""))
    with pytest.raises(NotFound):
        intake.parse("pipedrive", dataverse_request())


# --- HubSpot -------------------------------------------------------------------------------------------------
def test_hubspot_event_array(intake):
    events = intake.parse("hubspot", hubspot_request())
    assert [(e.entity, e.operation) for e in events] == [
        ("customer", "update"), ("customer", "update"), ("customer", "create"), ("deal", "update"),
        ("customer", "delete")]
    email, birthday, created, deal, deleted = events
    assert email.record == {"email": "taro@example.co.jp", "id": "hs-65059681032"}
    assert email.event_id == "12345678-234567-1761234501"
    assert birthday.record["birthday"] == "1980-11-22"  # epoch ms at midnight UTC
    assert birthday.occurred_at == datetime(2025, 11, 22, 8, 0, 1, tzinfo=UTC)
    assert created.record == {"id": "hs-65059681033"}
    assert deal.record == {"deal": {"id": "18023456789", "stage": "won"}}
    assert deleted.record == {"id": "hs-65059681034"}


def test_hubspot_signature_is_checked(intake):
    good = hubspot_request()
    with pytest.raises(Unauthorized, match="does not match"):
        intake.parse("hubspot", WebhookRequest.build("POST", good.url, good.body + b" ", dict(good.headers)))
    with pytest.raises(Unauthorized, match="does not match"):
        intake.parse("hubspot", hubspot_request(secret="someone-else"))
    with pytest.raises(Unauthorized, match="old"):
        intake.parse("hubspot", hubspot_request(now=NOW - timedelta(minutes=6)))
    with pytest.raises(Unauthorized, match="future"):
        intake.parse("hubspot", hubspot_request(now=NOW + timedelta(minutes=6)))
    headers = {k: v for k, v in good.headers.items() if k != "x-hubspot-signature-v3"}
    with pytest.raises(Unauthorized, match="required"):
        intake.parse("hubspot", WebhookRequest.build("POST", good.url, good.body, headers))


def test_hubspot_replay_is_refused(intake):
    request = hubspot_request()
    intake.parse("hubspot", request)
    with pytest.raises(Unauthorized, match="replayed"):
        intake.parse("hubspot", request)


def test_hubspot_signature_over_public_url_and_decoded_uri(tmp_path):
    settings = make_settings(tmp_path, PUBLIC_BASE_URL="https://crmflow.example.com", **SECRETS_ENV)
    intake = WebhookIntake(settings, NoBroker(), clock=lambda: NOW)
    signed = hubspot_request(url="https://crmflow.example.com/api/crm/hubspot?portal=1%3A2")
    # The worker sees an internal host; HubSpot signed the public URL with %3A decoded.
    internal = WebhookRequest.build("POST", "http://10.0.0.4/api/crm/hubspot?portal=1%3A2", signed.body,
                                    dict(signed.headers))
    assert len(intake.parse("hubspot", internal)) == 5


def test_hubspot_unmapped_property_is_skipped_and_wrong_type_refused(intake):
    body = [{"eventId": 1, "subscriptionId": 2, "portalId": 3, "occurredAt": 1763798400000,
             "subscriptionType": "contact.propertyChange", "objectId": 4, "propertyName": "favourite_colour",
             "propertyValue": "blue"}]
    assert intake.parse("hubspot", hubspot_request(json.dumps(body).encode())) == []
    body[0].update(propertyName="date_of_birth", propertyValue="yesterday")
    with pytest.raises(InvalidInput, match="date"):
        intake.parse("hubspot", hubspot_request(json.dumps(body).encode()))
    body[0].update(subscriptionType="company.creation")
    with pytest.raises(InvalidInput, match="unknown entity"):
        intake.parse("hubspot", hubspot_request(json.dumps(body).encode()))


# --- Salesforce ----------------------------------------------------------------------------------------------
def test_salesforce_notifications(intake):
    contact, opportunity = intake.parse("salesforce", salesforce_request())
    assert contact.event_id == "04l000000000001AAA" and contact.record_id == "003000000000001AAA"
    assert contact.record["id"] == "sf-003000000000001AAA"
    assert contact.record["birthday"] == "1980-11-22" and contact.record["email_opt_out"] is False
    assert contact.record["annual_spend"] == 1200000 and contact.record["contract_end"] is None
    assert contact.occurred_at == datetime(2025, 11, 22, 8, 0, tzinfo=UTC)
    assert opportunity.entity == "deal" and opportunity.record["customer_id"] == "sf-003000000000001AAA"
    assert opportunity.record["deal"]["stage"] == "won" and opportunity.record["purchase"] == {"product": "B"}


def test_salesforce_org_allow_list_and_xml_safety(intake):
    other_org = sample("salesforce_outbound.xml").replace(b"00D000000000001AAA", b"00D000000000009ZZZ")
    with pytest.raises(Unauthorized):
        intake.parse("salesforce", salesforce_request(other_org))
    bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
            b"<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/'>&lol2;</soapenv:Envelope>")
    with pytest.raises(InvalidInput, match="DTD"):
        intake.parse("salesforce", salesforce_request(bomb))
    with pytest.raises(InvalidInput, match="well-formed"):
        intake.parse("salesforce", salesforce_request(b"<soapenv:Envelope"))
    with pytest.raises(InvalidInput, match="content type"):
        intake.parse("salesforce", salesforce_request(**{"Content-Type": "application/json"}))


# --- Zoho ----------------------------------------------------------------------------------------------------
def test_zoho_notification(intake):
    [event] = intake.parse("zoho", zoho_request())
    assert event.record["id"] == "zc-5725767000000524157"
    assert event.record["owner"] == {"name": "佐藤 花子", "email": "hanako@contoso.com", "aad_object_id": None}
    assert event.record["birthday"] == "1980-11-22" and event.record["annual_spend"] == 1200000
    assert event.occurred_at == datetime(2025, 11, 22, 8, 0, tzinfo=UTC)
    assert event.event_id == "1000000068001-1763798400000-update-5725767000000524157"


def test_zoho_token(intake):
    body = json.loads(sample("zoho_notification.json"))
    body["token"] = "wrong"
    with pytest.raises(Unauthorized):
        intake.parse("zoho", zoho_request(json.dumps(body).encode()))
    body.pop("token")
    with pytest.raises(Unauthorized):
        intake.parse("zoho", zoho_request(json.dumps(body).encode()))
    assert intake.parse("zoho", zoho_request(json.dumps(body).encode(),
                                             **{"X-Zoho-Webhook-Token": SECRETS_ENV["ZOHO_WEBHOOK_TOKEN"]}))


# --- generic -------------------------------------------------------------------------------------------------
def test_generic_signed_customer(intake):
    [event] = intake.parse("generic", generic_request())
    assert event.record_id == "C-001" and event.record["owner"]["email"] == "hanako@contoso.com"
    assert "deals" not in event.record  # only the fields sent are applied
    assert len(message_id_for(event)) <= 128


def test_generic_rejects_bad_signatures_and_types(intake):
    with pytest.raises(Unauthorized):
        intake.parse("generic", generic_request(secret="wrong"))
    with pytest.raises(Unauthorized):
        intake.parse("generic", generic_request(now=NOW - timedelta(minutes=10)))
    body = json.loads(sample("generic_customer.json"))
    body["birthday"] = "22/11/1980"
    with pytest.raises(InvalidInput) as caught:
        intake.parse("generic", generic_request(json.dumps(body).encode()))
    assert caught.value.location.field == "birthday"


def test_a_source_without_its_secret_is_not_enabled(tmp_path):
    intake = WebhookIntake(make_settings(tmp_path), NoBroker(), clock=lambda: NOW)
    requests = {"generic": generic_request(), "hubspot": hubspot_request(), "zoho": zoho_request(),
                "salesforce": salesforce_request()}
    for source, request in requests.items():
        with pytest.raises(SourceNotEnabled) as caught:
            intake.parse(source, request)
        assert caught.value.to_dict() == {"error": "source not enabled"}  # callers never see the setting's name
        assert caught.value.setting in caught.value.message  # the operator's log does


def test_replay_guard_forgets_after_the_window():
    guard = ReplayGuard(window_seconds=10)
    guard.check_and_remember("a", monotonic_now=0)
    with pytest.raises(Unauthorized):
        guard.check_and_remember("a", monotonic_now=5)
    guard.check_and_remember("a", monotonic_now=16)


def test_long_event_ids_are_hashed_into_message_ids(intake):
    [event] = intake.parse("generic", generic_request(**{"X-Crmflow-Event-Id": "x" * 190}))
    assert len(message_id_for(event)) <= 128 and message_id_for(event).startswith("generic:")


# --- hardening: hostile input is refused (4xx) or defused, naming the field -----------------------------------
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

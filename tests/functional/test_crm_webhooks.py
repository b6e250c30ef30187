"""The CRM webhook functions, called with real azure.functions requests, queue into the local broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import azure.functions as func
import pytest
from azure.functions.servicebus import ServiceBusMessage

from functions.crm_tasks import crm_tasks
from functions.crm_webhooks import crm_dataverse, crm_generic, crm_hubspot, crm_salesforce, crm_zoho
from shared.container import Container, set_container
from shared.crm.common import WebhookRequest
from shared.domain.events import CrmEvent
from shared.domain.messages import ActionMessage
from shared.domain.names import CRM_EVENTS, TASKS
from tests.conftest import make_settings
from tests.crm_helpers import (
    SECRETS_ENV,
    dataverse_request,
    generic_request,
    hubspot_request,
    salesforce_request,
    wall_clock_now,
    zoho_request,
)
from tests.functional.registered import bindings_of, registered_functions

FUNCTIONS = {"dataverse": crm_dataverse, "hubspot": crm_hubspot, "salesforce": crm_salesforce, "zoho": crm_zoho,
             "generic": crm_generic}


def http(request: WebhookRequest) -> func.HttpRequest:
    return func.HttpRequest(request.method, request.url, headers=dict(request.headers), params=dict(request.params),
                            body=request.body)


@pytest.fixture
def app(tmp_path):
    container = Container(make_settings(tmp_path, **SECRETS_ENV))
    set_container(container)
    yield container
    set_container(None)
    container.broker.close()


def queued(container) -> list:
    messages = container.broker.receive(CRM_EVENTS, max_messages=500)
    for message in messages:
        container.broker.abandon(message)
    return messages


def test_routes_and_auth_levels():
    bindings = {name: bindings_of(name) for name in registered_functions()}
    for source in FUNCTIONS:
        trigger = next(b for b in bindings[f"crm_{source}"] if b["type"] == "httpTrigger")
        assert trigger["route"] == f"crm/{source}"
        # Dataverse and Salesforce sign nothing: the Functions key (?code=) is their credential.
        keyed = source in ("dataverse", "salesforce")
        expected = func.AuthLevel.FUNCTION if keyed else func.AuthLevel.ANONYMOUS
        assert trigger["authLevel"] == expected
    trigger = next(b for b in bindings["crm_tasks"] if b["type"] == "serviceBusTrigger")
    assert trigger["queueName"] == "crm-tasks" and trigger["connection"] == "ServiceBusConnection"


@pytest.mark.parametrize("source", ["dataverse", "hubspot", "zoho", "generic"])
def test_each_crm_gets_a_202_receipt_and_its_events_are_queued_once(app, source):
    build = {"dataverse": dataverse_request, "hubspot": lambda: hubspot_request(now=wall_clock_now()),
             "zoho": zoho_request, "generic": lambda: generic_request(now=wall_clock_now())}[source]
    response = FUNCTIONS[source](http(build()))
    assert response.status_code == 202, response.get_body()
    receipt = json.loads(response.get_body())
    assert receipt["status"] == "accepted" and receipt["accepted"] >= 1
    messages = queued(app)
    assert sorted(m.message_id for m in messages) == sorted(receipt["message_ids"])
    assert all(m.message_id.startswith(f"{source}:") for m in messages)
    events = [CrmEvent.from_json(m.body) for m in messages]
    assert {e.source for e in events} == {source}
    if source in ("dataverse", "zoho"):  # the CRM retries the same body: the broker drops the duplicates
        assert FUNCTIONS[source](http(build())).status_code == 202
        assert len(queued(app)) == len(messages)


def test_salesforce_is_answered_with_the_soap_ack(app):
    response = crm_salesforce(http(salesforce_request()))
    assert response.status_code == 200 and response.mimetype == "text/xml"
    assert b"<Ack>true</Ack>" in response.get_body()
    assert sorted(m.message_id for m in queued(app)) == ["salesforce:04l000000000001AAA",
                                                         "salesforce:04l000000000002AAA"]


@pytest.mark.parametrize(("source", "request_", "status"), [
    ("dataverse", lambda: dataverse_request(b"{not json"), 400),
    ("dataverse", lambda: dataverse_request(**{"Content-Type": "text/plain"}), 400),
    ("dataverse", lambda: dataverse_request(b"[" * 100_000), 400),
    ("hubspot", lambda: hubspot_request(), 401),  # signed at a fixed time long ago: stale
    ("generic", lambda: generic_request(now=wall_clock_now(), secret="wrong"), 401),
    ("zoho", lambda: zoho_request(b" " * (1024 * 1024 + 10)), 413),
    ("salesforce", lambda: salesforce_request(b"<x/>"), 400),
])
def test_bad_input_gets_a_json_4xx_and_nothing_is_queued(app, source, request_, status):
    response = FUNCTIONS[source](http(request_()))
    assert response.status_code == status
    body = json.loads(response.get_body())
    assert body["error"] and body["message"]
    assert queued(app) == []


def test_broker_outage_is_a_503_so_the_crm_retries(app, tmp_path):
    class DownBroker:
        def publish(self, queue, messages):
            from shared.domain.errors import TransientError

            raise TransientError("broker unavailable")

    app.crm_intake.broker = DownBroker()
    assert crm_dataverse(http(dataverse_request())).status_code == 503


@pytest.mark.azurite
def test_crm_tasks_trigger_writes_the_local_ledger_once(container):
    set_container(container)
    try:
        message = ActionMessage(
            dedupe_key="cross-sell-b|C-001", channel="crm_task", rule="cross-sell-b", kind="cross_sell",
            customer_id="C-001", to="hanako@contoso.com", subject="製品B提案",
            content={"description": "デモ案内", "due": "2025-11-29", "regarding_email": None, "owner_email": None},
            planned_at=datetime(2025, 11, 22, tzinfo=UTC))
        for delivery in (1, 2):
            crm_tasks(ServiceBusMessage(body=message.to_json().encode(), message_id=message.dedupe_key,
                                        delivery_count=delivery, application_properties={}, user_properties={}))
        rows = list(container.tables.table(TASKS).list_entities())
        assert [(r["PartitionKey"], r["subject"]) for r in rows] == [("C-001", "製品B提案")]
    finally:
        set_container(None)

"""Webhook hardening as callers see it, through the registered functions and real azure.functions requests."""

from __future__ import annotations

import json

import azure.functions as func
import pytest

from functions.crm_webhooks import crm_dataverse, crm_generic, crm_hubspot, crm_zoho
from functions.health import health
from shared.container import Container, set_container
from shared.crm.common import WebhookRequest
from shared.domain.names import CRM_EVENTS
from tests.conftest import make_settings
from tests.crm_helpers import SECRETS_ENV, dataverse_request, generic_request, sample, wall_clock_now


def http(request: WebhookRequest) -> func.HttpRequest:
    return func.HttpRequest(request.method, request.url, headers=dict(request.headers), params=dict(request.params),
                            body=request.body)


def queued(container) -> list:
    messages = container.broker.receive(CRM_EVENTS, max_messages=500)
    for message in messages:
        container.broker.abandon(message)
    return messages


def test_a_replay_to_another_instance_is_absorbed_by_the_broker(tmp_path):
    """Two instances (own container, own intake and replay guard) share one broker, as in Azure: the second copy
    of a signed request gets the same message id, and duplicate detection drops it."""
    settings = make_settings(tmp_path, **SECRETS_ENV)
    first, second = Container(settings), Container(settings)
    request = generic_request(now=wall_clock_now(), **{"X-Crmflow-Operation": "update", "X-Crmflow-Event-Id": "e-7"})
    try:
        receipts = []
        for instance in (first, second):
            set_container(instance)
            response = crm_generic(http(request))
            assert response.status_code == 202, response.get_body()
            receipts.append(json.loads(response.get_body()))
        assert receipts[0]["message_ids"] == receipts[1]["message_ids"] == ["generic:e-7"]
        assert [m.message_id for m in queued(first)] == ["generic:e-7"]  # once, not twice

        # Without an event id header the id is a hash of the signed content: the same holds.
        plain = generic_request(now=wall_clock_now())
        for instance in (first, second):
            set_container(instance)
            assert crm_generic(http(plain)).status_code == 202
        assert len(queued(first)) == 2
    finally:
        set_container(None)
        first.broker.close()
        second.broker.close()


@pytest.mark.parametrize("function,build", [
    (crm_generic, lambda: generic_request(now=wall_clock_now())),
    (crm_hubspot, lambda: WebhookRequest.build("POST", "http://127.0.0.1:7071/api/crm/hubspot",
                                               sample("hubspot_events.json"), {"Content-Type": "application/json"})),
    (crm_zoho, lambda: WebhookRequest.build("POST", "http://127.0.0.1:7071/api/crm/zoho",
                                            sample("zoho_notification.json"), {"Content-Type": "application/json"})),
])
def test_a_source_without_its_secret_answers_404_without_naming_the_setting(tmp_path, function, build):
    container = Container(make_settings(tmp_path))
    set_container(container)
    try:
        response = function(http(build()))
        assert response.status_code == 404
        assert json.loads(response.get_body()) == {"error": "source not enabled"}
        assert b"SECRET" not in response.get_body() and b"TOKEN" not in response.get_body()
        assert queued(container) == []
    finally:
        set_container(None)
        container.broker.close()


def test_health_lists_the_enabled_sources(azurite, tmp_path):
    env = {"TABLES_CONNECTION_STRING": azurite.connection_string, "GENERIC_WEBHOOK_SECRET": "s"}
    container = Container(make_settings(tmp_path, **env))
    container.tables.ensure_tables()
    set_container(container)
    try:
        body = json.loads(health(func.HttpRequest("GET", "http://127.0.0.1/api/health", body=b"")).get_body())
        assert body["crm_sources"] == ["dataverse", "generic"]
    finally:
        set_container(None)
        container.broker.close()


def test_a_dataverse_date_out_of_range_is_a_400_not_a_500(tmp_path):
    container = Container(make_settings(tmp_path, **SECRETS_ENV))
    set_container(container)
    try:
        body = sample("dataverse_contact_update.json").replace(b"/Date(1763798400123+0000)/",
                                                               b"/Date(999999999999999)/")
        response = crm_dataverse(http(dataverse_request(body)))
        assert response.status_code == 400
        assert json.loads(response.get_body())["field"] == "OperationCreatedOn"
        assert queued(container) == []
    finally:
        set_container(None)
        container.broker.close()

"""A customer's journey end to end on the local host: signed generic webhooks and daily sweeps through the very
functions of `function_app`, read back from `GET /api/customers/{id}/journey`."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

import function_app
from devhost import LocalHost
from shared.container import Container
from shared.domain.names import CRM_EVENTS, CRM_TASKS, SWEEP_SHARDS
from shared.pipeline.sweep import plan_sweep
from tests.conftest import make_settings
from tests.crm_helpers import GENERIC_SECRET, generic, wall_clock_now

KEY = "journey-e2e-key"


@pytest.fixture
def host(azurite, tmp_path):
    settings = make_settings(tmp_path, TABLES_CONNECTION_STRING=azurite.connection_string, FUNCTIONS_KEY=KEY,
                             GENERIC_WEBHOOK_SECRET=GENERIC_SECRET, SWEEP_SCHEDULE="0 0 0 1 1 *",
                             CUSTOMER_SHARDS="4")
    container = Container(settings)
    container.tables.ensure_tables()
    with LocalHost(function_app.app, container, port=0, receive_wait_seconds=0.1) as running:
        yield running
    container.broker.close()


def post(host, body: dict, event_id: str) -> requests.Response:
    data = json.dumps(body, ensure_ascii=False).encode()
    timestamp = str(int(wall_clock_now().timestamp()))
    return requests.post(f"{host.url}/api/crm/generic", data=data, timeout=10, headers={
        "Content-Type": "application/json", "X-Crmflow-Timestamp": timestamp, "X-Crmflow-Event-Id": event_id,
        "X-Crmflow-Signature": generic.sign_v2(GENERIC_SECRET, timestamp, data, event_id=event_id)})


def journey(host, customer_id: str = "C-E2E") -> dict:
    response = requests.get(f"{host.url}/api/customers/{customer_id}/journey?code={KEY}", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def settle(host) -> None:
    """Wait until the host has worked off every queue the journey touches."""
    broker = host.container.broker
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(broker.count(queue) == 0 for queue in (CRM_EVENTS, SWEEP_SHARDS, CRM_TASKS)):
            time.sleep(0.3)  # a message in flight is not counted: look twice
            if all(broker.count(queue) == 0 for queue in (CRM_EVENTS, SWEEP_SHARDS, CRM_TASKS)):
                return
        time.sleep(0.1)
    raise AssertionError("the host did not settle")


def sweep_on(host, day) -> None:
    plan_sweep(host.container.settings, host.container.broker, datetime.now(UTC), today=day)
    settle(host)


def test_generic_webhooks_and_sweeps_take_a_customer_through_all_five_stages(host):
    today = wall_clock_now().date()
    onboarding_due, notice = today + timedelta(days=10), today + timedelta(days=300)
    customer = {"id": "C-E2E", "name": "E2E Co", "email": "e2e@example.com", "timezone": "UTC",
                "owner": {"name": "Rep", "email": "rep@contoso.com"},
                "deals": [{"id": "D-1", "type": "subscription_new", "stage": "open",
                           "onboarding_due": onboarding_due.isoformat(), "renewal_notice_date": notice.isoformat()}]}
    assert post(host, customer, "ev-1").status_code == 202
    settle(host)
    assert journey(host)["stage"] == "contract"
    won_and_delivered = {"id": "C-E2E", "deals": [{"id": "D-1", "stage": "delivered"}]}
    assert post(host, won_and_delivered, "ev-2").status_code == 202
    time.sleep(1.1)  # the CRM retries a second later, re-signed, with the same event id
    assert post(host, won_and_delivered, "ev-2").status_code == 202
    settle(host)
    assert journey(host)["stage"] == "onboarding"
    sweep_on(host, onboarding_due - timedelta(days=1))
    assert journey(host)["stage"] == "onboarding"
    sweep_on(host, onboarding_due + timedelta(days=2))  # two sweep days were missed
    assert journey(host)["stage"] == "utilization"
    sweep_on(host, notice)
    assert journey(host)["stage"] == "renewal"
    renewal = {"id": "C-E2E", "deals": [{"id": "D-2", "type": "subscription_renewal", "stage": "won",
                                         "renewal_notice_date": (notice + timedelta(days=365)).isoformat()}]}
    assert post(host, renewal, "ev-3").status_code == 202
    settle(host)
    view = journey(host)
    assert view["customer"] == "C-E2E" and view["stage"] == "utilization"
    assert [(h["from"], h["to"]) for h in view["history"]] == [
        (None, "contract"), ("contract", "implementation"), ("implementation", "onboarding"),
        ("onboarding", "utilization"), ("utilization", "renewal"), ("renewal", "utilization")]
    assert [h["cause"] for h in view["history"]] == [
        "generic:ev-1", "generic:ev-2", "generic:ev-2", "onboarding_due", "renewal_notice_date", "generic:ev-3"]
    assert view["history"][3]["due"] == onboarding_due.isoformat()
    assert view["since"] == view["history"][-1]["at"]
    # Every transition left one CRM task in the local Tasks table (the crm-tasks function wrote them).
    tasks = list(host.container.tables.table("Tasks").query_entities("PartitionKey eq 'C-E2E'"))
    assert sorted(t["rule"] for t in tasks) == sorted(
        f"customer-success-{t}" for t in ("contract", "implementation", "onboarding", "utilization", "renewal",
                                          "renewed"))


def test_journey_route_needs_the_key_and_knows_the_customer(host):
    assert requests.get(f"{host.url}/api/customers/C-X/journey", timeout=10).status_code == 401
    response = requests.get(f"{host.url}/api/customers/nobody/journey?code={KEY}", timeout=10)
    assert response.status_code == 404 and response.json()["error"] == "NotFound"

"""GET /api/opportunities and PATCH /api/opportunities/{id}, called as the Functions host calls them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import azure.functions as func
import pytest

from functions.opportunities import opportunities_list, opportunities_update
from shared.container import set_container
from shared.domain.vocabulary import OpportunityStatus
from tests.functional.registered import bindings_of
from tests.integration.test_ledger import claim

NOW = datetime(2026, 11, 24, tzinfo=UTC)


@pytest.fixture
def ledger(container):
    claims = [claim(i) for i in range(5)] + [claim(9, messages=0, status=OpportunityStatus.SUPPRESSED)]
    published = container.ledger.claim(claims, NOW).to_publish
    container.ledger.mark_published([c for c in published if c.messages], NOW)
    set_container(container)
    yield container.ledger
    set_container(None)


def get(**params) -> func.HttpResponse:
    return opportunities_list(func.HttpRequest("GET", "/api/opportunities", params=params, body=b""))


def patch(opportunity_id: str, body: object) -> func.HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return opportunities_update(func.HttpRequest("PATCH", f"/api/opportunities/{opportunity_id}", body=raw,
                                                 route_params={"id": opportunity_id}))


def test_routes_need_the_function_key():
    for name in ("opportunities_list", "opportunities_update"):
        [trigger] = [b for b in bindings_of(name) if b["type"] == "httpTrigger"]
        assert trigger["authLevel"] == func.AuthLevel.FUNCTION


def test_list_filters_on_the_service_side(ledger):
    everything = json.loads(get().get_body())
    assert everything["count"] == 6
    queued = json.loads(get(status=OpportunityStatus.QUEUED, limit="3").get_body())
    assert queued["count"] == 3 and {o["status"] for o in queued["items"]} == {OpportunityStatus.QUEUED}
    one = json.loads(get(customer_id="C-0002").get_body())
    assert [o["customer_id"] for o in one["items"]] == ["C-0002"]
    assert json.loads(get(month="2026-11", rule="cross-sell-b").get_body())["count"] == 6


@pytest.mark.parametrize(("params", "field"), [({"status": "maybe"}, "status"), ({"month": "11/2026"}, "month"),
                                                ({"limit": "0"}, "limit"), ({"owner": "x"}, "owner")])
def test_bad_filters_are_400_naming_the_parameter(ledger, params, field):
    response = get(**params)
    assert response.status_code == 400 and json.loads(response.get_body())["field"] == field


def test_patch_records_progress_and_the_amount_won(ledger):
    item = json.loads(get(customer_id="C-0001").get_body())["items"][0]
    assert patch(item["id"], {"status": "in_progress"}).status_code == 200
    won = patch(item["id"], {"status": "won", "amount": 480000})
    assert won.status_code == 200 and json.loads(won.get_body())["amount"] == 480000
    assert ledger.get(item["id"]).status == "won"


@pytest.mark.parametrize(("body", "status", "fragment"), [
    (b"{broken", 400, "JSON"), ({"status": "won", "amount": -1}, 400, "amount"),
    ({"status": "won", "note": "x"}, 400, "note"), ({"amount": 1}, 400, "status"),
    ({"status": "notified"}, 400, "cannot change"),
])
def test_patch_rejects_bad_bodies_and_transitions(ledger, body, status, fragment):
    item = json.loads(get(customer_id="C-0003").get_body())["items"][0]
    response = patch(item["id"], body)
    assert response.status_code == status and fragment in response.get_body().decode()
    assert ledger.get(item["id"]).status == OpportunityStatus.QUEUED


def test_patch_of_an_unknown_opportunity_is_404(ledger):
    assert patch("s0000~nothing", {"status": "won"}).status_code == 404

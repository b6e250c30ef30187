"""GET /api/dashboard after a real sweep and delivery of the samples: the numbers match the tables they come from."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import azure.functions as func
import pytest

from functions.dashboard import dashboard
from shared.container import set_container
from shared.customers.importer import import_customers
from shared.devtools.commands.demo import _fast_forward, deliver_all
from shared.devtools.commands.sweep import run_sweep
from shared.devtools.sample_data import DEMO_NOW
from shared.opportunities.ledger import FiringClaim
from tests.functional.registered import bindings_of

SAMPLES = Path(__file__).parent.parent.parent / "samples"


@pytest.fixture(scope="module")
def swept(azurite, tmp_path_factory):
    from tests.conftest import make_settings

    settings = make_settings(tmp_path_factory.mktemp("dash"), TABLES_CONNECTION_STRING=azurite.connection_string,
                             UNSUBSCRIBE_SIGNING_KEY="dashboard-test-key-0123456789")
    from shared.container import Container

    container = Container(settings)
    container.tables.ensure_tables()
    import_customers(container.customers, SAMPLES / "customers.csv", purchases_path=SAMPLES / "purchases.csv")
    _fast_forward(container)
    run_sweep(container, DEMO_NOW)
    deliver_all(container)
    campaign = next(o for o in container.ledger.iter_all() if o.kind == "campaign")
    container.ledger.set_status(campaign.id, "won", amount=300000)
    upsell = [o for o in container.ledger.iter_all() if o.kind == "upsell"][:2]
    container.ledger.set_status(upsell[0].id, "won", amount=500000)
    container.ledger.set_status(upsell[1].id, "lost")
    hostile = FiringClaim(key="x:H-1:ever", rule="cross-sell-a-to-b", kind="cross_sell", customer_id="H-1",
                    owner_name="<script>alert(1)</script>", owner_email=None, status="suppressed",
                    recommendation=None, local_date="2026-11-24", actions=())
    container.ledger.claim([hostile], DEMO_NOW)
    set_container(container)
    yield container
    set_container(None)


def get(**params) -> func.HttpResponse:
    headers = {"accept": "text/html"} if params.pop("html", False) else {}
    return dashboard(func.HttpRequest("GET", "/api/dashboard", params=params, headers=headers, body=b""))


def test_dashboard_needs_the_function_key():
    [trigger] = [b for b in bindings_of("dashboard") if b["type"] == "httpTrigger"]
    assert trigger["authLevel"] == func.AuthLevel.FUNCTION


def test_numbers_match_the_tables(swept):
    data = json.loads(get().get_body())
    opportunities = list(swept.ledger.iter_all())
    opp = data["opportunities"]
    assert opp["total"] == len(opportunities) == sum(opp["by_status"].values()) == sum(opp["by_kind"].values())
    assert opp["by_status"] == dict(Counter(o.status for o in opportunities))
    assert opp["conversion"]["upsell"] == {"won": 1, "lost": 1, "rate": 0.5, "amount_won": 500000.0}
    assert opp["amount_won"] == 800000.0
    [campaign] = opp["campaigns"].values()
    assert campaign["won"] == 1 and campaign["revenue"] == 300000.0
    stages = Counter(c.stage for c in swept.customers.iter_all())
    assert {k: v for k, v in data["journey"]["stages"].items() if v} == dict(stages)
    delivery = data["delivery"]
    teams_files = len(list((swept.settings.local_dir / "outbox" / "teams").glob("*.json")))
    assert delivery["outcomes"]["teams"]["sent"] == teams_files > 100
    assert delivery["approvals_pending"] == opp["by_status"]["needs_approval"] == 18
    assert set(delivery["dead_letters"]) == {"sweep-shards", "crm-events", "teams", "email", "crm-tasks"}
    assert "@example.co" not in get().get_body().decode()  # no customer addresses


def test_html_view_escapes_everything(swept):
    response = get(html=True)
    body = response.get_body().decode()
    assert response.mimetype == "text/html" and "Journey stages" in body
    assert "<script>alert(1)</script>" not in body and "&lt;script&gt;" in body


@pytest.mark.parametrize("days", ["0", "x", "365"])
def test_bad_days_is_400(swept, days):
    assert get(days=days).status_code == 400

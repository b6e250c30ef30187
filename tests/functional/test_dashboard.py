"""GET /api/dashboard after a real sweep and delivery of the samples: the numbers match the tables they come from,
the page is the snapshot plus one work-list query, and the routes authenticate their callers."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
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
                             UNSUBSCRIBE_SIGNING_KEY="dashboard-test-key-0123456789", FUNCTIONS_KEY=KEY)
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
    container.dashboard.refresh(datetime.now(UTC))
    set_container(container)
    yield container
    set_container(None)


KEY = "dashboard-functions-key"


def get(headers: dict | None = None, **params) -> func.HttpResponse:
    headers = dict(headers or {})
    if params.pop("html", False):
        headers["accept"] = "text/html"
    params.setdefault("code", KEY)
    if params["code"] is None:
        del params["code"]
    return dashboard(func.HttpRequest("GET", "/api/dashboard", params=params, headers=headers, body=b""))


def test_dashboard_routes_are_anonymous_for_the_platform_and_check_the_caller_themselves(swept):
    for name in ("dashboard", "dashboard_outcome"):
        [trigger] = [b for b in bindings_of(name) if b["type"] == "httpTrigger"]
        assert trigger["authLevel"] == func.AuthLevel.ANONYMOUS
    assert get(code=None).status_code == 401
    assert get(code="wrong").status_code == 401
    assert get(code=None, headers={"x-functions-key": KEY}).status_code == 200
    # Without App Service Authentication a principal header proves nothing.
    assert get(code=None, headers={"x-ms-client-principal-name": "sato@contoso.com"}).status_code == 401


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
    # Expired approvals are not pending (the sweep ran at the demo instant; its approvals live 7 days).
    pending = list(swept.approval_store.query("pending"))
    assert len(pending) == opp["by_status"]["needs_approval"] == 18
    now = datetime.fromisoformat(data["generated_at"])
    assert delivery["approvals_pending"] == sum(not a.expired(now) for a in pending)
    assert set(delivery["dead_letters"]) == {"sweep-shards", "crm-events", "teams", "email", "crm-tasks"}
    assert "@example.co" not in get().get_body().decode()  # no customer addresses


def test_html_view_escapes_everything(swept):
    response = get(html=True, lang="en", owner="all")
    body = response.get_body().decode()
    assert response.mimetype == "text/html" and "Customer journey" in body
    assert "<script>alert(1)</script>" not in body and "&lt;script&gt;" in body
    assert "@example.co" not in body and "@contoso" not in body  # neither customer nor rep addresses
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self' 'nonce-" in csp and "frame-ancestors" in csp and "teams.microsoft.com" in csp


@pytest.mark.parametrize("days", ["0", "x", "365"])
def test_bad_days_is_400(swept, days):
    assert get(days=days).status_code == 400


def test_an_approval_counts_as_pending_until_it_expires(swept):
    [first, *_] = swept.approval_store.query("pending")
    assert swept.approval_store.count_pending(first.expires_at - timedelta(seconds=1)) == 18
    assert swept.approval_store.count_pending(first.expires_at + timedelta(days=1)) == 0

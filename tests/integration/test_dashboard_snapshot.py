"""The dashboard's snapshot and work list over Azurite: what a refresh writes, what a page reads."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest

from shared.container import Container
from shared.dashboard.service import DashboardQuery
from shared.dashboard.worklist import owner_key
from shared.domain.errors import InvalidInput
from shared.domain.model import Customer
from shared.opportunities.ledger import FiringClaim
from shared.storage.tables import TableAccess
from shared.web.dashboard_auth import Viewer

pytestmark = pytest.mark.azurite
NOW = datetime(2026, 11, 24, 3, tzinfo=UTC)
SATO, SUZUKI = "hanako.sato@contoso.com", "ken.suzuki@contoso.com"


def claim(number: int, owner: str | None, status: str = "queued", kind: str = "cross_sell") -> FiringClaim:
    return FiringClaim(key=f"rule-{kind}:C-{number}:ever", rule=f"rule-{kind}", kind=kind, customer_id=f"C-{number}",
                 owner_name={SATO: "佐藤 花子", SUZUKI: None}.get(owner), owner_email=owner, status=status,
                 recommendation="製品Bのデモ案内", local_date="2026-11-24", actions=())


@pytest.fixture
def stack(settings) -> tuple[Container, Counter]:
    requests: Counter = Counter()
    container = Container(settings)
    container.tables = TableAccess(settings, raw_response_hook=lambda r: requests.update([r.http_request.method]))
    container.tables.ensure_tables()
    container.customers.upsert_many([Customer.from_dict({
        "id": f"C-{n}", "name": f"株式会社{n}", "email": f"c{n}@example.co.jp",
        "crm_url": "javascript:alert(1)" if n == 3 else f"https://crm.example/records/C-{n}"}) for n in range(1, 8)])
    container.ledger.claim([claim(1, SATO), claim(2, SATO, kind="upsell"), claim(3, SUZUKI),
                            claim(4, SUZUKI, "suppressed"), claim(5, None), claim(6, SATO, "needs_approval"),
                            claim(7, SATO, kind="campaign")], NOW)
    return container, requests


def test_refresh_lists_open_opportunities_by_owner_and_rewrites_only_what_changed(stack):
    container, _ = stack
    report = container.dashboard.refresh(NOW)
    assert (report.ledger_rows, report.open_items, report.written, report.deleted) == (7, 6, 6, 0)
    items = {item.customer_id: item for item in container.dashboard.work_list.iter_all()}
    assert set(items) == {"C-1", "C-2", "C-3", "C-5", "C-6", "C-7"}  # suppressed is not work
    assert items["C-1"].customer_name == "株式会社1" and items["C-1"].due == "2026-12-01"
    assert items["C-1"].crm_url == "https://crm.example/records/C-1" and items["C-3"].crm_url is None
    assert items["C-3"].owner_name == "k***@contoso.com" and items["C-5"].owner == "unassigned"
    stored = json.dumps([i.to_dict() for i in items.values()], ensure_ascii=False)
    assert "@example.co.jp" not in stored and SATO not in stored

    assert container.dashboard.refresh(NOW).written == 0  # unchanged: nothing rewritten
    opportunity = container.ledger.query(customer_id="C-1")[0]
    container.ledger.set_status(opportunity.id, "won", amount=120000)
    container.ledger.set_status(container.ledger.query(customer_id="C-2")[0].id, "in_progress")
    again = container.dashboard.refresh(NOW)
    assert (again.written, again.deleted) == (1, 1)
    data = container.dashboard.snapshots.read()
    assert data["kpi"] == {"month": "2026-11", "this_month": 7, "open": 5, "won": 1, "lost": 0,
                           "revenue_won": 120000.0, "conversion_rate": 1.0}
    assert data["rules"]["rule-cross_sell"]["revenue"] == 120000.0
    assert [o["open"] for o in data["owners"]] == [3, 1, 1] and data["owners"][0]["key"] == owner_key(SATO)


def test_a_page_is_one_point_read_and_one_query_and_the_filters_narrow_it(stack):
    container, requests = stack
    service = container.dashboard
    service.refresh(NOW)
    requests.clear()
    html, _ = service.page(DashboardQuery(owner="all"), Viewer(), "ja", NOW)
    assert sum(requests.values()) == 2 and html.count("data-opportunity=") == 6
    requests.clear()
    assert service.snapshot(NOW)["kpi"]["open"] == 6 and sum(requests.values()) == 1
    mine = service.page(DashboardQuery(), Viewer(SATO), "ja", NOW)[0]  # a signed-in rep starts on their own list
    assert mine.count("data-opportunity=") == 4 and f'value="{owner_key(SATO)}"' in mine
    assert service.page(DashboardQuery(owner="all"), Viewer(SATO), "ja", NOW)[0].count("data-opportunity=") == 6
    upsells = service.page(DashboardQuery(owner="me", kind="upsell"), Viewer(SATO), "en", NOW)[0]
    assert upsells.count("data-opportunity=") == 1
    waiting = service.work_list.page(owner=owner_key(SATO), status="needs_approval")
    assert [i.customer_id for i in waiting.items] == ["C-6"]


def test_pages_continue_with_a_cursor(stack):
    container, _ = stack
    container.dashboard.refresh(NOW)
    seen, cursor = [], None
    for _ in range(10):
        page = container.dashboard.work_list.page(size=2, cursor=cursor)
        seen += [i.opportunity_id for i in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 6
    with pytest.raises(InvalidInput):
        container.dashboard.work_list.page(cursor="%%%not-a-cursor")


def test_an_outcome_from_the_page_updates_the_ledger_and_the_row_at_once(stack):
    container, _ = stack
    service = container.dashboard
    service.refresh(NOW)
    opportunity = container.ledger.query(customer_id="C-2")[0]
    service.record_outcome(opportunity.id, b'{"status": "in_progress"}', Viewer())
    [row] = [i for i in service.work_list.iter_all() if i.customer_id == "C-2"]
    assert row.status == "in_progress"
    updated = service.record_outcome(opportunity.id, b'{"status": "won", "amount": 480000}', Viewer())
    assert (updated.status, updated.amount) == ("won", 480000)
    assert not [i for i in service.work_list.iter_all() if i.customer_id == "C-2"]
    with pytest.raises(InvalidInput):  # the opportunities API's rules: no way back to notified from won
        service.record_outcome(opportunity.id, b'{"status": "notified"}', Viewer())

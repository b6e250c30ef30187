"""A rep answers an opportunity card in a real browser (Playwright driving Debian's chromium) against the local
host running the registered functions: the card's "won" button opens the localised page, the rep enters the amount,
the ledger records it once."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

import pytest

import function_app
from devhost import LocalHost
from shared.container import Container
from shared.domain.model import Customer
from shared.domain.names import TEAMS
from shared.opportunities.ledger import REP, WON
from tests.conftest import FIXTURES, make_settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


def test_rep_records_a_won_deal_from_the_card(azurite, tmp_path):
    from playwright.sync_api import sync_playwright

    settings = make_settings(tmp_path, TABLES_CONNECTION_STRING=azurite.connection_string,
                             RULES_DIR=str(FIXTURES / "rules_outcomes"),
                             UNSUBSCRIBE_SIGNING_KEY="browser-test-signing-key-0123456789")
    container = Container(settings)
    container.tables.ensure_tables()
    customer = Customer.from_dict({"id": "C-7", "name": "株式会社サンプル", "products": ["A"], "locale": "ja-JP",
                                   "owner": {"name": "佐藤 花子", "email": "hanako@contoso.com"}})
    container.customers.put(customer, None)
    now = datetime.now(UTC)
    container.planner.plan([(customer, f) for f in container.evaluator.evaluate(customer, now=now,
                                                                                trigger="sweep")], now)
    [message] = container.broker.receive(TEAMS, max_messages=10)
    links = {a["title"]: a["url"] for a in json.loads(message.body)["content"]["card"]["actions"]}
    won_link = urlsplit(links["受注"])
    opportunity_id = unquote(won_link.path.split("/")[3])

    with LocalHost(function_app.app, container, port=0, receive_wait_seconds=0.1) as running, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page()
            page.goto(f"{running.url}{won_link.path}?{won_link.query}")
            assert page.locator("html").get_attribute("lang") == "ja"
            assert page.get_by_text("株式会社サンプル").is_visible()
            page.fill("input[name=amount]", "480,000")
            page.get_by_role("button", name="受注").click()
            page.wait_for_load_state()
            assert "「受注」として記録しました" in page.content()
            page.go_back()
            page.reload()
            assert page.get_by_text("won (rep,").is_visible()  # the last decision, audited
        finally:
            browser.close()
    recorded = container.ledger.get(opportunity_id)
    assert (recorded.status, recorded.amount, recorded.outcome_source) == (WON, 480000, REP)
    container.broker.close()

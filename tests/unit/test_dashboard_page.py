"""The dashboard page without storage: language choice, readers of the report's optional parts, escaping, and the
checks that guard the page and its outcome buttons."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from shared.dashboard.snapshot import _display_name, _safe_url
from shared.dashboard.worklist import WorkItem, WorkPage, due_date, owner_key
from shared.domain.errors import InvalidInput, Unauthorized
from shared.settings import Settings
from shared.web import dashboard_page as page
from shared.web.dashboard_auth import Viewer, action_token, authenticate, check_action

NOW = datetime(2026, 11, 24, tzinfo=UTC)
BASE = {"TABLES_CONNECTION_STRING": "UseDevelopmentStorage=true", "UNSUBSCRIBE_SIGNING_KEY": "k" * 32}
JSON = {"content-type": "application/json", "sec-fetch-site": "same-origin"}


def settings(**env: str) -> Settings:
    return Settings.from_env({**BASE, **env})


@pytest.mark.parametrize(("requested", "accept", "expected"), [
    ("en", "ja-JP,ja;q=0.9", "en"), (None, "en-US,en;q=0.9,ja;q=0.8", "en"), (None, "fr-FR, ja;q=0.5", "ja"),
    (None, "ja;q=0.2, en;q=0.8", "en"), (None, None, "ja"), ("xx", "de", "ja"), (None, "en;q=bogus, ja", "ja"),
])
def test_language_from_the_parameter_then_accept_language_then_the_default(requested, accept, expected):
    assert page.pick_language(requested, accept, "ja-JP") == expected


def test_addresses_are_masked_and_only_http_links_are_kept():
    assert page.mask("hanako@contoso.com") == "h***@contoso.com" and page.mask("佐藤 花子") == "佐藤 花子"
    assert _display_name({"owner_email": "hanako@contoso.com"}) == "h***@contoso.com"
    assert _safe_url("javascript:alert(1)") is None and _safe_url("https://crm.example/r/1") == "https://crm.example/r/1"


def test_owner_keys_and_due_dates():
    assert owner_key("Hanako@Contoso.com ") == owner_key("hanako@contoso.com") != owner_key("taro@contoso.com")
    assert "@" not in owner_key("hanako@contoso.com") and owner_key(None) == "unassigned"
    assert due_date("2026-11-24", 7) == "2026-12-01" and due_date("2026-11-24", None) is None
    assert due_date("not a date", 7) is None


def test_journey_today_is_a_funnel_of_stage_counts():
    journey = page.journey({"journey": {"contract": 3, "onboarding": 5, "(none)": 2}}, page.TEXT["en"])
    assert [b.label for b in journey.chart.bars] == ["Contract", "Onboarding", "No stage"]
    assert not journey.has_stuck and not journey.transitions


def test_journey_shows_sla_stuck_counts_median_days_and_transitions_when_the_report_has_them():
    data = {"journey": {"stages": {"contract": 4, "implementation": 2},
                        "past_sla": {"contract": 1}, "median_days": {"contract": 12.5},
                        "transitions": {"contract→implementation": 7, "implementation→onboarding": 3}}}
    journey = page.journey(data, page.TEXT["en"])
    contract = journey.chart.bars[0]
    assert contract.value == 4 and "1 past SLA" in contract.note and "12.5 median days" in contract.note
    assert journey.stuck_total == 1 and journey.transitions[0] == ("contract→implementation", 7)
    nested = page.journey({"journey": {"renewal": {"customers": 6, "past_sla": 2}}}, page.TEXT["en"])
    assert nested.chart.bars[0].value == 6 and nested.stuck_total == 2


def test_revenue_prefers_attributed_revenue_and_reads_months():
    data = {"opportunities": {"campaigns": {"old": {"opportunities": 1, "won": 0, "lost": 0, "revenue": 0}}},
            "revenue": {"by_campaign": {"spring": {"opportunities": 9, "won": 3, "lost": 1, "revenue": 900000,
                                                   "months": {"2026-10": {"revenue": 400000},
                                                              "2026-11": 500000}}}}}
    html, _ = page.render(page.PageContext(data=data, work=WorkPage((), None), filters=page.Filters(lang="en")))
    assert "spring" in html and "old" not in html and "2026-11 ¥500,000" in html
    [row] = page.revenue_rows(data["revenue"]["by_campaign"])
    assert (row.won, row.lost, row.revenue) == (3, 1, 900000.0)


def test_an_empty_report_renders_no_data_panels():
    html, nonce = page.render(page.PageContext(data={}, work=WorkPage((), None), filters=page.Filters(lang="en")))
    assert html.count("No data yet") >= 6 and "No matching opportunities" in html
    assert f'nonce="{nonce}"' in html


def test_everything_from_the_data_is_escaped():
    hostile = "<img src=x onerror=alert(1)>"
    item = WorkItem(owner="o" + "0" * 16, opportunity_id="s0001~k", rule="r", kind="cross_sell", status="notified",
                    customer_id="C-1", customer_name=hostile, crm_url=None, owner_name=hostile,
                    recommendation=hostile, detected="2026-11-24", due="2026-12-01")
    data = {"opportunities": {"by_kind": {hostile: 1}, "by_owner": {hostile: 1}, "by_status": {hostile: 1},
                              "by_month": {"2026-11": 1}, "campaigns": {hostile: {"revenue": 1}}},
            "journey": {hostile: 1}, "owners": [{"key": "o" + "0" * 16, "name": hostile, "open": 1}]}
    html, _ = page.render(page.PageContext(data=data, work=WorkPage((item,), None),
                                           filters=page.Filters(lang="ja"), tokens={"s0001~k": "t.t"}))
    assert hostile not in html and "&lt;img" in html
    assert re.search(r"<script(?![^>]*(nonce=|type=\"application/json\"))", html) is None


def test_the_key_mode_needs_the_configured_key_and_nobody_gets_in_without_one():
    keyed = settings(FUNCTIONS_KEY="s3cret")
    assert authenticate(keyed, {}, {"code": "s3cret"}) == Viewer(mode="key")
    assert authenticate(keyed, {"x-functions-key": "s3cret"}, {}) == Viewer(mode="key")
    with pytest.raises(Unauthorized):
        authenticate(keyed, {}, {"code": "wrong"})
    with pytest.raises(Unauthorized):
        authenticate(settings(), {}, {})  # DASHBOARD_AUTH=key without FUNCTIONS_KEY: closed
    assert authenticate(settings(DASHBOARD_AUTH="open"), {}, {}) == Viewer(mode="open")
    # Who an outcome from the page names: nobody signed in, so the mode's holder.
    assert (Viewer(mode="key").decider, Viewer(mode="open").decider) == ("function-key", "local")


def test_the_signed_in_user_is_trusted_only_behind_app_service_authentication():
    signed_in = settings(DASHBOARD_AUTH="app_service")
    assert authenticate(signed_in, {"X-MS-CLIENT-PRINCIPAL-NAME": "Sato@contoso.com"}, {}).principal == \
        "Sato@contoso.com"
    with pytest.raises(Unauthorized):
        authenticate(signed_in, {}, {})
    with pytest.raises(Unauthorized):  # key mode: the header proves nothing
        authenticate(settings(FUNCTIONS_KEY="s3cret"), {"x-ms-client-principal-name": "sato@contoso.com"}, {})


def test_an_action_token_is_for_one_opportunity_one_user_and_twelve_hours():
    signed_in = settings(DASHBOARD_AUTH="app_service")
    me = {**JSON, "x-ms-client-principal-name": "sato@contoso.com"}
    token = action_token(signed_in, Viewer("Sato@contoso.com"), "s0001~a", NOW)
    assert check_action(signed_in, {**me, "x-crmflow-action": token}, "s0001~a", NOW).decider == \
        "sato@contoso.com"
    refusals = [
        ({**me, "x-crmflow-action": token}, "s0001~b", NOW),  # another row
        ({**me, "x-ms-client-principal-name": "suzuki@contoso.com", "x-crmflow-action": token}, "s0001~a", NOW),
        ({**me, "x-crmflow-action": token}, "s0001~a", NOW + timedelta(hours=13)),  # expired
        ({**me, "sec-fetch-site": "cross-site", "x-crmflow-action": token}, "s0001~a", NOW),
        (me, "s0001~a", NOW),  # no token
    ]
    for headers, opportunity, when in refusals:
        with pytest.raises(Unauthorized):
            check_action(signed_in, headers, opportunity, when)
    with pytest.raises(InvalidInput):  # a form post cannot send JSON
        check_action(signed_in, {"x-crmflow-action": token, "content-type": "application/x-www-form-urlencoded",
                                 "x-ms-client-principal-name": "sato@contoso.com"}, "s0001~a", NOW)
    assert action_token(Settings.from_env({"TABLES_CONNECTION_STRING": "x"}), Viewer(), "s0001~a", NOW) is None


def test_the_tab_entry_offers_teams_sign_in_behind_app_service_authentication():
    from shared.dashboard.service import DashboardService

    service = DashboardService(settings(DASHBOARD_AUTH="app_service"), None, None, None, None, ruleset=lambda: None)
    html, target, nonce = service.tab({"owner": "me", "lang": "en"}, None)
    assert target == "/api/dashboard?owner=me&lang=en" and nonce and f'nonce="{nonce}"' in html
    assert "authentication.authenticate" in html and "post_login_redirect_uri=%2Fapi%2Fteams%2Ftab%3Fdone%3D1" in html
    with pytest.raises(InvalidInput):
        service.tab({"owner": "//evil.example"}, None)
    keyed = DashboardService(settings(FUNCTIONS_KEY="k"), None, None, None, None, ruleset=lambda: None)
    assert keyed.tab({"owner": "all"}, None) == (None, "/api/dashboard?owner=all", None)


def test_segments_and_uplift_are_shown_when_the_report_has_them():
    arm = {"customers": 130, "conversion_rate": 0.1154, "revenue_per_customer": 11538.46}
    treated = {"customers": 127, "conversion_rate": 0.2362, "revenue_per_customer": 47244.09}
    data = {"segments": {"customers": 3, "by_label": {"champions": 2, "at_risk": 1}},
            "uplift": {"campaign-x": {"status": "ok", "treatment": treated, "control": arm,
                                      "conversion_uplift": {"difference": 0.120836, "ci95": [0.027689, 0.213055]},
                                      "revenue_uplift_per_customer": {"difference": 35705.63,
                                                                      "ci95": [19760, 51651]}}}}
    html, _ = page.render(page.PageContext(data=data, work=WorkPage((), None), filters=page.Filters(lang="en")))
    assert 'data-chart="segments"' in html and "champions" in html and "at_risk" in html
    assert "campaign-x" in html and "+12.1% [+2.8%, +21.3%]" in html and "+35,706 [+19,760, +51,651]" in html
    empty, _ = page.render(page.PageContext(data={}, work=WorkPage((), None), filters=page.Filters(lang="en")))
    assert 'data-part="uplift"' not in empty

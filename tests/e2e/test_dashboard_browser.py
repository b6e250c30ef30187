"""The dashboard page in a real browser (Playwright driving Debian's chromium) against `crmflow serve` after
`crmflow demo`, as a person would use it. Screenshots land in .local/screenshots/ for a human to look at."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import requests

from shared.devtools.localstack import free_port
from shared.settings import APP_ROOT

playwright_api = pytest.importorskip("playwright.sync_api")  # requirements-dev.txt installs it

SCREENSHOTS = APP_ROOT / ".local" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
SIZES = {"laptop": (1366, 900), "teams": (420, 900)}


def _chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("chromium is not installed: `make test` installs it with apt-get (Debian package chromium)")
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`crmflow demo`, then `crmflow serve` on a free port over the demo's data."""
    local = tmp_path_factory.mktemp("dashboard-e2e") / "local"
    env = {k: v for k, v in os.environ.items()
           if k not in ("TABLES_CONNECTION_STRING", "TABLES_ACCOUNT_URL", "FUNCTIONS_KEY", "DASHBOARD_AUTH")}
    # The refresh timer stays out of the way: the test compares the page with the snapshot the demo wrote.
    env.update(LOCAL_DIR=str(local), BROKER="local", PYTHONUNBUFFERED="1",
               DASHBOARD_REFRESH_SCHEDULE="0 0 0 1 1 *")
    demo = subprocess.run([sys.executable, "-m", "shared.cli", "demo"], cwd=APP_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert demo.stdout.rstrip().splitlines()[-1].endswith("http://127.0.0.1:7071/api/dashboard")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "shared.cli", "serve", "--port", str(port)], cwd=APP_ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            try:
                if requests.get(f"{base}/health", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "crmflow serve did not answer"
            time.sleep(0.3)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="ja-JP")
    opened = context.new_page()
    problems: list[str] = []
    opened.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    opened.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    opened.problems = problems
    yield opened
    context.close()


def shoot(page, name: str, *, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def test_page_loads_clean_and_its_numbers_are_the_json(served, page):
    data = requests.get(f"{served}/dashboard", headers={"Accept": "application/json"}, timeout=30).json()
    page.goto(f"{served}/dashboard")
    assert page.title().startswith("営業機会ダッシュボード")
    for name in ("this_month", "open", "won", "revenue_won", "conversion_rate"):
        shown = page.get_attribute(f"[data-kpi={name}]", "data-value")
        expected = data["kpi"][name]
        assert (float(shown) if shown else None) == (float(expected) if expected is not None else None), name
    assert data["kpi"]["open"] > 0 and data["kpi"]["this_month"] > 0
    for chart in ("kind", "owner", "status", "trend", "journey"):
        assert page.locator(f"svg[data-chart={chart}]").count() == 1, chart
    assert page.locator("svg[data-chart=kind] rect").count() == len([v for v in data["opportunities"]["by_kind"]
                                                                     .values() if v])
    assert page.locator("svg[data-chart=status] circle").count() == len(data["opportunities"]["by_status"])
    delivery = page.locator("[data-delivery=approvals_pending] .value").inner_text()
    assert int(delivery.replace(",", "")) == data["delivery"]["approvals_pending"]
    body = page.content()
    assert "@example.co" not in body and "@contoso" not in body
    shoot(page, "dashboard-ja-laptop")
    page.set_viewport_size({"width": SIZES["teams"][0], "height": SIZES["teams"][1]})
    shoot(page, "dashboard-ja-teams-width", full_page=False)
    page.locator("#work").scroll_into_view_if_needed()
    shoot(page, "dashboard-ja-teams-width-work-list", full_page=False)
    assert page.evaluate("document.documentElement.scrollWidth") <= SIZES["teams"][0] + 1  # no sideways scrolling
    assert page.problems == []


def test_english_via_lang_and_accept_language(served, browser):
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="en-US")
    page = context.new_page()
    page.goto(f"{served}/dashboard")
    assert page.locator("h2#h-work").inner_text() == "Work list"
    shoot(page, "dashboard-en-laptop")
    page.goto(f"{served}/dashboard?lang=ja")
    assert page.locator("h2#h-work").inner_text() == "対応リスト"
    context.close()


def test_owner_filter_narrows_the_list(served, page):
    page.goto(f"{served}/dashboard?owner=all&size=100")
    everyone = page.locator("table.work tbody tr")
    total = everyone.count()
    owners = page.eval_on_selector_all("select[name=owner] option", "os => os.map(o => o.value)")
    owner = next(o for o in owners if o not in ("all", "me"))
    with page.expect_navigation():
        page.select_option("select[name=owner]", owner)  # the page submits the filter itself
    rows = page.locator("table.work tbody tr")
    assert 0 < rows.count() < total
    assert set(page.eval_on_selector_all("table.work tbody tr", "rs => rs.map(r => r.dataset.owner)")) == {owner}
    assert page.get_attribute("select[name=owner] option:checked", "value") == owner
    with page.expect_navigation():
        page.select_option("select[name=kind]", "cross_sell")
    kinds = set(page.eval_on_selector_all("table.work tbody tr", "rs => rs.map(r => r.dataset.kind)"))
    assert kinds <= {"cross_sell"}
    assert page.problems == []


def test_pages_of_the_work_list(served, page):
    page.goto(f"{served}/dashboard?owner=all&size=5")
    first = page.eval_on_selector_all("table.work tbody tr", "rs => rs.map(r => r.dataset.opportunity)")
    assert len(first) == 5
    with page.expect_navigation():  # the links load another page: read it once it is there, not the old one
        page.click("[data-page=next]")
    second = page.eval_on_selector_all("table.work tbody tr", "rs => rs.map(r => r.dataset.opportunity)")
    assert second and not set(first) & set(second)
    with page.expect_navigation():
        page.click("[data-page=first]")
    assert page.eval_on_selector_all("table.work tbody tr", "rs => rs.map(r => r.dataset.opportunity)") == first


def test_an_outcome_action_updates_the_row_and_the_ledger(served, page):
    page.goto(f"{served}/dashboard?owner=all&lang=en")
    row = page.locator("table.work tbody tr[data-status=notified]").first
    opportunity = row.get_attribute("data-opportunity")
    row.locator("button[data-action=in_progress]").click()
    target = page.locator(f"tr[data-opportunity='{opportunity}']")
    playwright_api.expect(target.locator(".badge.status")).to_have_text("In progress")
    assert target.get_attribute("data-status") == "in_progress"
    target.locator("input[name=amount]").fill("480000")
    target.locator("button[data-action=won]").click()
    playwright_api.expect(target.locator(".badge.status")).to_have_text("Won")
    shoot(page, "dashboard-en-outcome")
    stored = requests.get(f"{served}/opportunities", params={"status": "won", "limit": 1000}, timeout=30).json()
    [won] = [o for o in stored["items"] if o["id"] == opportunity]
    assert won["amount"] == 480000
    # Recorded as the rep's outcome, audited like the card's link: who (the local stack's open mode names its
    # user "local"; behind App Service Authentication it is the signed-in user), when, and from the dashboard.
    assert (won["outcome_source"], won["decision"], won["decided_via"], won["decided_by"]) == (
        "rep", "won", "dashboard", "local")
    assert won["decided_at"] and won["decided_at"] >= won["detected_at"]
    # Reloaded, the open list no longer shows it.
    page.goto(f"{served}/dashboard?owner=all&size=100")
    assert page.locator(f"tr[data-opportunity='{opportunity}']").count() == 0
    assert page.problems == []


def test_a_forged_or_missing_action_token_is_refused(served):
    page_html = requests.get(f"{served}/dashboard?owner=all", headers={"Accept": "text/html"}, timeout=30).text
    opportunity = page_html.split('data-opportunity="', 1)[1].split('"', 1)[0]
    url = f"{served}/dashboard/opportunities/{requests.utils.quote(opportunity, safe='')}"
    assert requests.patch(url, json={"status": "lost"}, timeout=30).status_code == 401
    forged = requests.patch(url, json={"status": "lost"}, headers={"X-Crmflow-Action": "e30.AAAA"}, timeout=30)
    assert forged.status_code == 401
    token = page_html.split('data-token="', 1)[1].split('"', 1)[0]
    other = requests.patch(f"{served}/dashboard/opportunities/s0000~other", json={"status": "lost"},
                           headers={"X-Crmflow-Action": token}, timeout=30)
    assert other.status_code == 401  # a token is for its own row only
    cross_site = requests.patch(url, json={"status": "lost"}, timeout=30,
                                headers={"X-Crmflow-Action": token, "Sec-Fetch-Site": "cross-site"})
    assert cross_site.status_code == 401



def test_the_channel_tab_settings_page_and_the_teams_sdk_are_served_by_the_app(served):
    sdk = requests.get(f"{served}/teams/teams.js", timeout=30)
    assert sdk.status_code == 200 and "javascript" in sdk.headers["Content-Type"]
    assert b"microsoftTeams" in sdk.content
    page = requests.get(f"{served}/dashboard/configure?lang=en", timeout=30)
    assert page.status_code == 200 and 'id="kind"' in page.text and 'src="/api/teams/teams.js"' in page.text
    assert "frame-ancestors" in page.headers["Content-Security-Policy"]


def test_the_tab_entry_goes_straight_to_the_page_without_app_service_sign_in(served):
    entry = requests.get(f"{served}/teams/tab", params={"owner": "all", "lang": "en"}, allow_redirects=False,
                         timeout=30)
    assert entry.status_code == 302 and entry.headers["Location"] == "/api/dashboard?owner=all&lang=en"
    hostile = requests.get(f"{served}/teams/tab", params={"owner": "https://evil.example"}, allow_redirects=False,
                           timeout=30)
    assert hostile.status_code == 400

"""GET|POST /api/opportunities/{id}/outcome called as the Functions host calls it: the card's signed buttons,
the localised page, an idempotent and audited decision, clear 4xx for bad links, bad amounts and closed ones."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import azure.functions as func
import pytest

from functions.opportunities import opportunities_update
from functions.outcomes import opportunity_outcome
from shared.container import Container, set_container
from shared.domain.model import Customer
from shared.domain.names import TEAMS
from shared.domain.signing import OUTCOME, sign
from shared.opportunities.ledger import CRM, REP, WON
from tests.conftest import FIXTURES, make_settings
from tests.functional.registered import bindings_of

NOW = datetime.now(UTC)  # the function checks links against the real clock
KEY = "outcome-test-signing-key-0123456789"


@pytest.fixture
def card(azurite, tmp_path):
    settings = make_settings(tmp_path, TABLES_CONNECTION_STRING=azurite.connection_string,
                             RULES_DIR=str(FIXTURES / "rules_outcomes"), UNSUBSCRIBE_SIGNING_KEY=KEY)
    container = Container(settings)
    container.tables.ensure_tables()
    customer = Customer.from_dict({"id": "C-1", "name": "Contoso KK", "products": ["A"], "locale": "en-US",
                                   "owner": {"name": "Hanako", "email": "hanako@contoso.com"}})
    container.customers.put(customer, None)
    firings = container.evaluator.evaluate(customer, now=NOW, trigger="sweep")
    container.planner.plan([(customer, f) for f in firings], NOW)
    [message] = container.broker.receive(TEAMS, max_messages=10)
    actions = json.loads(message.body)["content"]["card"]["actions"]
    set_container(container)
    yield container, {a["title"]: a["url"] for a in actions}
    set_container(None)
    container.broker.close()


def call(method: str, url: str, *, body: bytes = b"", headers: dict | None = None) -> func.HttpResponse:
    parts = urlsplit(url)
    opportunity_id = unquote(parts.path.split("/")[3])
    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return opportunity_outcome(func.HttpRequest(method, url, params=params, route_params={"id": opportunity_id},
                                                headers=headers or {}, body=body))


def post(url: str, **fields) -> func.HttpResponse:
    token = parse_qs(urlsplit(url).query)["token"][0]
    return call("POST", url.split("?")[0], body=urlencode({"token": token, **fields}).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"})


def test_route_is_anonymous_the_token_is_the_credential():
    [trigger] = [b for b in bindings_of("opportunity_outcome") if b["type"] == "httpTrigger"]
    assert trigger["authLevel"] == func.AuthLevel.ANONYMOUS and trigger["route"] == "opportunities/{id}/outcome"
    assert sorted(str(m.value if hasattr(m, "value") else m) for m in trigger["methods"]) == ["GET", "POST"]


def test_card_buttons_page_and_an_idempotent_audited_decision(card):
    container, buttons = card
    assert set(buttons) >= {"In progress", "Won", "Not now"}
    page = call("GET", buttons["Won"])
    html = page.get_body().decode()
    assert page.status_code == 200 and page.headers["Referrer-Policy"] == "no-referrer"
    assert 'lang="en"' in html and "Contoso KK" in html and html.count("<form") == 3
    assert "outline" in html  # the button the card named is highlighted
    opportunity_id = unquote(urlsplit(buttons["Won"]).path.split("/")[3])
    assert container.ledger.get(opportunity_id).status != WON  # a GET (a chat preview) changes nothing

    done = post(buttons["Won"], decision="won", amount="480,000")
    assert done.status_code == 200 and "Recorded as won" in done.get_body().decode()
    first = container.ledger.get(opportunity_id)
    assert (first.status, first.amount, first.outcome_source, first.decided_by) == (WON, 480000, REP,
                                                                                     "hanako@contoso.com")
    assert post(buttons["Won"], decision="won", amount="480000").status_code == 200  # a double click
    assert container.ledger.get(opportunity_id).decided_at == first.decided_at  # nothing written again
    # The rep may correct their own answer; JSON works too.
    answer = call("POST", buttons["Not now"].split("?")[0], headers={"Content-Type": "application/json"},
                  body=json.dumps({"token": parse_qs(urlsplit(buttons["Not now"]).query)["token"][0],
                                   "decision": "not_now"}).encode())
    assert answer.status_code == 200 and json.loads(answer.get_body())["status"] == "lost"
    assert json.loads(answer.get_body())["decision"] == "not_now"


def test_bad_links_amounts_and_closed_opportunities_get_clear_4xx(card):
    container, buttons = card
    url = buttons["Won"]
    opportunity_id = unquote(urlsplit(url).path.split("/")[3])
    base = url.split("?")[0]
    assert call("GET", base).status_code == 401
    assert call("GET", base + "?token=not-a-token").status_code == 400  # malformed
    real = parse_qs(urlsplit(url).query)["token"][0]
    forged = real.split(".")[0] + "." + sign(container.settings, OUTCOME, "x", NOW).split(".")[1]
    assert call("GET", base + "?" + urlencode({"token": forged})).status_code == 401
    other = sign(container.settings, OUTCOME, "p00~someone-else", NOW)
    assert call("GET", base + "?" + urlencode({"token": other})).status_code == 401  # a token for another id
    approval_token = sign(container.settings, "approval", opportunity_id, NOW)
    assert call("GET", base + "?" + urlencode({"token": approval_token})).status_code == 401  # another purpose
    missing = "p00~nothing-here"
    token = sign(container.settings, OUTCOME, missing, NOW)
    assert call("GET", f"https://x/api/opportunities/{missing}/outcome?" + urlencode({"token": token})
                ).status_code == 404
    for amount in ("Infinity", "1e999", "-5", "lots"):
        assert post(url, decision="won", amount=amount).status_code == 400
    assert post(url, decision="maybe").status_code == 400
    json_token = parse_qs(urlsplit(url).query)["token"][0]
    infinite = call("POST", base, headers={"Content-Type": "application/json"},
                    body=b'{"token": "%s", "decision": "won", "amount": Infinity}' % json_token.encode())
    assert infinite.status_code == 400
    patch = opportunities_update(func.HttpRequest("PATCH", f"/api/opportunities/{opportunity_id}",
                                                  route_params={"id": opportunity_id},
                                                  body=b'{"status": "won", "amount": Infinity}'))
    assert patch.status_code == 400 and container.ledger.get(opportunity_id).amount is None
    # The CRM closed it: the rep's click is refused with 409 and a page that says why.
    container.ledger.record_outcome(opportunity_id, WON, source=CRM, now=NOW, amount=9000, deal_id="D-1")
    closed = post(url, decision="not_now")
    assert closed.status_code == 409 and "D-1" in closed.get_body().decode()
    final = container.ledger.get(opportunity_id)
    assert (final.status, final.outcome_source) == (WON, CRM)

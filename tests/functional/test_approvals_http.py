"""GET|POST /api/approvals/{id} called as the Functions host calls it (real func.HttpRequest), on Azurite, the local
broker and the outbox transport: review, approve once, reject, refuse bad links, and the mail that follows."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default
from urllib.parse import urlencode

import azure.functions as func
import pytest
from azure.functions.servicebus import ServiceBusMessage
from azure.functions.timer import TimerRequest

import function_app
from functions.approvals import approvals, approvals_housekeeping
from functions.senders import send_email, send_teams
from shared.approvals.flow import approval_id
from shared.container import set_container
from shared.devtools.sample_data import DEMO_NOW
from shared.domain.messages import ActionMessage
from shared.domain.names import EMAIL, TEAMS
from shared.domain.signing import APPROVAL, sign
from shared.domain.vocabulary import ApprovalStatus, OpportunityStatus
from shared.opportunities.ledger import row_key
from shared.settings import Settings
from tests.approval_support import CUSTOMER, approval_stack, approvals_of, at, plan

SATURDAY_NOON_TOKYO = at("2026-11-28T12:00:00+09:00")
MONDAY_OPENING_TOKYO = at("2026-11-30T09:00:00+09:00")


@pytest.fixture
def stack(azurite, tmp_path):
    container, clock = approval_stack(azurite, tmp_path)
    plan(container)
    for card in container.broker.receive(TEAMS, max_messages=10):  # the request card: not under test here
        container.broker.complete(card)
    [approval] = approvals_of(container)
    token = container.approvals.link(approval.id, DEMO_NOW).split("token=")[1]
    set_container(container)
    yield container, clock, approval, token
    set_container(None)
    container.broker.close()


def get(approval_id_: str, token: str | None = None, accept: str = "text/html") -> func.HttpResponse:
    params = {"token": token} if token is not None else {}
    return approvals(func.HttpRequest("GET", f"https://crmflow.example/api/approvals/{approval_id_}",
                                      params=params, route_params={"id": approval_id_}, headers={"Accept": accept},
                                      body=b""))


def post_form(approval_id_: str, token: str | None, decision: str) -> func.HttpResponse:
    fields = {"decision": decision, **({"token": token} if token is not None else {})}
    return approvals(func.HttpRequest(
        "POST", f"https://crmflow.example/api/approvals/{approval_id_}", route_params={"id": approval_id_},
        headers={"Content-Type": "application/x-www-form-urlencoded"}, body=urlencode(fields).encode()))


def post_json(approval_id_: str, body: dict) -> func.HttpResponse:
    return approvals(func.HttpRequest(
        "POST", f"https://crmflow.example/api/approvals/{approval_id_}", route_params={"id": approval_id_},
        headers={"Content-Type": "application/json"}, body=json.dumps(body).encode()))


def text(response: func.HttpResponse) -> str:
    return response.get_body().decode("utf-8")


def opportunity_status(container, approval) -> str:
    oid = f"{container.ledger.partition_of(CUSTOMER['id'])}~{row_key(approval.firing_key)}"
    return container.ledger.get(oid).status


def test_the_route_is_anonymous_and_registered():
    # FunctionApp.get_functions() may be called once per process (it re-validates names), so read the builders.
    trigger = next(b.get_dict_repr() for b in approvals._function.get_bindings()
                   if b.get_dict_repr()["type"] == "httpTrigger")
    assert trigger["route"] == "approvals/{id}" and trigger["authLevel"] == func.AuthLevel.ANONYMOUS
    assert sorted(str(m) for m in trigger["methods"]) == ["GET", "POST"]
    assert approvals._function in [b._function for b in function_app.approvals.bp._function_builders]


def test_get_shows_exactly_what_will_be_sent_with_the_buttons(stack):
    _, _, approval, token = stack
    response = get(approval.id, token)
    page = text(response)
    held = approval.message
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert response.headers["Referrer-Policy"] == "no-referrer" and response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert '<html lang="ja">' in page and "承認して送信" in page and "却下" in page
    assert "t***@example.co.jp" in page and CUSTOMER["email"] not in page
    assert held.subject in page and held.content["text"].splitlines()[0] in page
    assert '<iframe sandbox=""' in page and "srcdoc=" in page and "<script" not in page.lower()
    assert page.count(f'name="token" value="{token}"') == 2 and f'action="/api/approvals/{approval.id}"' in page
    as_json = get(approval.id, token, accept="application/json")
    body = json.loads(as_json.get_body())
    assert body["status"] == ApprovalStatus.PENDING and "to" not in body


def test_the_page_speaks_the_customers_language(azurite, tmp_path):
    container, _ = approval_stack(azurite, tmp_path)
    from shared.domain.model import Customer

    container.customers.upsert_many([Customer.from_dict({**CUSTOMER, "locale": "en-US"})])
    plan(container)
    [approval] = approvals_of(container)
    set_container(container)
    try:
        page = text(get(approval.id, container.approvals.link(approval.id, DEMO_NOW).split("token=")[1]))
    finally:
        set_container(None)
    assert '<html lang="en">' in page and "Approve and send" in page


@pytest.mark.parametrize("case", ["missing", "forged", "tampered", "other-approval", "malformed"])
def test_bad_links_are_refused_and_show_nothing(stack, case):
    container, _, approval, token = stack
    settings = container.settings
    tokens = {
        "missing": None,
        "forged": sign(Settings.from_env({"TABLES_CONNECTION_STRING": "-", "UNSUBSCRIBE_SIGNING_KEY": "guess"}),
                       APPROVAL, approval.id, DEMO_NOW),
        "tampered": token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        "other-approval": sign(settings, APPROVAL, approval_id("something-else"), DEMO_NOW),
        "malformed": "not-a-token",
    }
    for response in (get(approval.id, tokens[case]), post_form(approval.id, tokens[case], "approve"),
                     post_json(approval.id, {"decision": "approve", "token": tokens[case]})):
        assert response.status_code == 401
        assert approval.message.subject not in text(response) and "example.co.jp" not in text(response)
    assert json.loads(post_json(approval.id, {"decision": "approve", "token": tokens[case]}).get_body())[
        "error"] == "Unauthorized"
    assert container.approval_store.get(approval.id).status == ApprovalStatus.PENDING
    assert container.broker.count(EMAIL) == 0


def test_a_valid_token_for_an_unknown_approval_is_404(stack):
    container, _, _, _ = stack
    unknown = approval_id("never-planned")
    response = get(unknown, sign(container.settings, APPROVAL, unknown, DEMO_NOW), accept="application/json")
    assert response.status_code == 404 and json.loads(response.get_body())["error"] == "NotFound"


def test_approve_publishes_once_into_business_hours_and_a_double_click_is_409(stack):
    container, clock, approval, token = stack
    clock.set(SATURDAY_NOON_TOKYO)
    first = post_form(approval.id, token, "approve")
    again = post_form(approval.id, token, "approve")
    assert first.status_code == 200 and "承認しました" in text(first)
    assert again.status_code == 409 and "すでに承認済み" in text(again)
    second = post_json(approval.id, {"decision": "reject", "token": token})
    assert json.loads(second.get_body())["status"] == ApprovalStatus.APPROVED

    stored = container.approval_store.get(approval.id)
    assert stored.status == ApprovalStatus.APPROVED and stored.published and stored.decided_at == SATURDAY_NOON_TOKYO
    assert opportunity_status(container, approval) == OpportunityStatus.QUEUED
    assert container.broker.count(EMAIL) == 1
    assert container.broker.receive(EMAIL) == [], "scheduled: not visible on Saturday"
    clock.set(MONDAY_OPENING_TOKYO)
    [queued] = container.broker.receive(EMAIL)
    mail = ActionMessage.from_json(queued.body)
    assert queued.message_id == approval.action_key and mail.not_before == MONDAY_OPENING_TOKYO
    assert mail.content == approval.message.content and mail.followups == approval.message.followups


def test_concurrent_approvals_publish_once(stack):
    container, clock, approval, token = stack
    clock.set(MONDAY_OPENING_TOKYO + timedelta(hours=1))
    barrier = threading.Barrier(6)
    statuses: list[int] = []

    def click(decision: str):
        barrier.wait()
        statuses.append(post_json(approval.id, {"decision": decision, "token": token}).status_code)

    threads = [threading.Thread(target=click, args=("approve" if i % 2 else "reject",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 409, 409, 409, 409, 409]
    decided = container.approval_store.get(approval.id).status
    assert container.broker.count(EMAIL) == (1 if decided == ApprovalStatus.APPROVED else 0)


def test_reject_publishes_nothing(stack):
    container, _, approval, token = stack
    response = post_json(approval.id, {"decision": "reject", "token": token})
    assert response.status_code == 200 and json.loads(response.get_body())["status"] == ApprovalStatus.REJECTED
    assert post_form(approval.id, token, "approve").status_code == 409
    assert container.broker.count(EMAIL) == 0 and opportunity_status(container, approval) == "rejected"
    assert get(approval.id, token).status_code == 409


def test_a_bad_decision_is_400(stack):
    container, _, approval, token = stack
    assert post_json(approval.id, {"decision": "maybe", "token": token}).status_code == 400
    assert post_json(approval.id, ["approve"]).status_code == 400
    assert container.approval_store.get(approval.id).status == ApprovalStatus.PENDING


def test_an_expired_approval_answers_409_and_is_never_sent(stack):
    container, clock, approval, token = stack
    clock.set(DEMO_NOW + timedelta(days=7, minutes=1))
    page = get(approval.id, token)
    assert page.status_code == 409 and "有効期限" in text(page)
    late = post_json(approval.id, {"decision": "approve", "token": token})
    assert json.loads(late.get_body())["status"] == ApprovalStatus.EXPIRED
    assert container.approval_store.get(approval.id).status == ApprovalStatus.EXPIRED
    assert container.broker.count(EMAIL) == 0 and opportunity_status(container, approval) == "suppressed"
    clock.set(DEMO_NOW + timedelta(days=400))  # long after: the link itself has expired
    assert get(approval.id, token).status_code == 401


def test_housekeeping_timer_expires_through_the_registered_function(stack):
    container, clock, approval, _ = stack
    clock.set(DEMO_NOW + timedelta(days=8))
    approvals_housekeeping(TimerRequest(past_due=False))
    assert container.approval_store.get(approval.id).status == ApprovalStatus.EXPIRED


def test_after_approval_the_sender_delivers_the_mail_and_the_fyi_follows(stack):
    container, clock, approval, token = stack
    clock.set(DEMO_NOW + timedelta(hours=2))  # Tuesday 11:00 in Tokyo: inside business hours, sent at once
    assert post_form(approval.id, token, "approve").status_code == 200
    [queued] = container.broker.receive(EMAIL)
    send_email(ServiceBusMessage(body=queued.body.encode(), message_id=queued.message_id, delivery_count=1,
                                 application_properties={}, user_properties={}))
    outbox = container.settings.local_dir / "outbox"
    [eml] = list((outbox / "email").glob("*.eml"))
    mail = message_from_bytes(eml.read_bytes(), policy=default)
    assert mail["Subject"] == approval.message.subject and mail["To"] == CUSTOMER["email"]
    [fyi] = container.broker.receive(TEAMS, max_messages=10)
    assert ActionMessage.from_json(fyi.body).dedupe_key == ActionMessage.from_json(
        approval.message.followups[0]).dedupe_key
    send_teams(ServiceBusMessage(body=fyi.body.encode(), message_id=fyi.message_id, delivery_count=1,
                                 application_properties={}, user_properties={}))
    assert len(list((outbox / "teams").glob("*.json"))) == 1
    assert opportunity_status(container, approval) == OpportunityStatus.NOTIFIED
    assert datetime.fromtimestamp(clock(), UTC) == DEMO_NOW + timedelta(hours=2)


# --- who may decide -----------------------------------------------------------------------------------------
def post_as(approval_id_: str, token: str, decision: str, principal: str | None) -> func.HttpResponse:
    headers = {"Content-Type": "application/json"}
    if principal is not None:
        headers["X-MS-CLIENT-PRINCIPAL-NAME"] = principal
    return approvals(func.HttpRequest(
        "POST", f"https://crmflow.example/api/approvals/{approval_id_}", route_params={"id": approval_id_},
        headers=headers, body=json.dumps({"decision": decision, "token": token}).encode()))


def test_without_sign_in_the_principal_header_is_not_trusted(stack):
    container, _, approval, token = stack
    assert post_as(approval.id, token, "reject", "ceo@contoso.example").status_code == 200
    assert container.approval_store.get(approval.id).decided_by is None  # a header anyone can send


@pytest.fixture
def signed_in_stack(azurite, tmp_path):
    from shared.domain.model import Customer

    container, _clock = approval_stack(azurite, tmp_path, APP_SERVICE_AUTH_ENABLED="true")
    container.customers.upsert_many([Customer.from_dict(
        {**CUSTOMER, "manager": {"name": "部長", "email": "boss@contoso.example"}})])
    plan(container)
    [approval] = approvals_of(container)
    token = container.approvals.link(approval.id, DEMO_NOW).split("token=")[1]
    set_container(container)
    yield container, approval, token
    set_container(None)
    container.broker.close()


def test_with_sign_in_only_the_owner_or_manager_may_decide(signed_in_stack):
    container, approval, token = signed_in_stack
    assert approval.approver == "hanako@contoso.example" and approval.deputy == "boss@contoso.example"
    assert post_as(approval.id, token, "approve", None).status_code == 401  # sign-in required
    assert post_as(approval.id, token, "approve", "mallory@contoso.example").status_code == 403
    assert container.approval_store.get(approval.id).status == ApprovalStatus.PENDING  # refused before any change
    assert post_as(approval.id, token, "reject", "Boss@Contoso.example").status_code == 200
    decided = container.approval_store.get(approval.id)
    assert decided.status == ApprovalStatus.REJECTED and decided.decided_by == "Boss@Contoso.example"


def test_with_sign_in_the_owner_may_approve(signed_in_stack):
    container, approval, token = signed_in_stack
    assert post_as(approval.id, token, "approve", "hanako@contoso.example").status_code == 200
    assert container.approval_store.get(approval.id).status == ApprovalStatus.APPROVED

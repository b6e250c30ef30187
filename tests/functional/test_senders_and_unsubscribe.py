"""The queue triggers and the unsubscribe route, called as the Functions host calls them (real azure.functions
objects), on the local outbox transport and Azurite."""

from __future__ import annotations

import json
from email import message_from_bytes
from email.policy import default

import azure.functions as func
import pytest
from azure.functions.servicebus import ServiceBusMessage

import function_app
from functions.senders import send_email, send_teams
from functions.unsubscribe import unsubscribe
from shared.container import Container, set_container
from shared.devtools.commands import outbox as outbox_command
from shared.domain.errors import InvalidInput
from shared.domain.names import EMAIL, TEAMS
from shared.domain.signing import unsubscribe_url
from tests.conftest import make_settings
from tests.delivery_support import SIGNING_KEY, action


@pytest.fixture
def local(azurite, tmp_path):
    settings = make_settings(tmp_path, TABLES_CONNECTION_STRING=azurite.connection_string,
                             UNSUBSCRIBE_SIGNING_KEY=SIGNING_KEY, MAIL_SENDER="crm-notify@contoso.example")
    container = Container(settings)
    container.tables.ensure_tables()
    set_container(container)
    yield container
    set_container(None)


def queued(message) -> ServiceBusMessage:
    return ServiceBusMessage(body=message.to_json().encode(), message_id=message.dedupe_key, delivery_count=1,
                             application_properties={}, user_properties={})


def trigger_of(builder) -> dict:
    # FunctionApp.get_functions() may be called once per process (it re-validates names), so read the builders.
    return next(b.get_dict_repr() for b in builder._function.get_bindings()
                if b.get_dict_repr()["type"] == "serviceBusTrigger")


def test_sender_triggers_listen_on_their_queues():
    assert trigger_of(send_email)["queueName"] == EMAIL and trigger_of(send_teams)["queueName"] == TEAMS
    assert trigger_of(send_email)["connection"] == "ServiceBusConnection"
    assert {"send_email", "send_teams", "unsubscribe"} <= {b._function.get_function_name() for b in (
        send_email, send_teams, unsubscribe)}
    assert function_app.app is not None


def test_email_trigger_writes_an_eml_once_and_releases_the_followup(local, capsys):
    fyi = action("teams", key="renewal:C-001:90:fyi", to="hanako@contoso.example")
    message = action(followups=(fyi.to_json(),))
    send_email(queued(message))
    send_email(queued(message))  # redelivered: acknowledged, no second file
    files = sorted((local.settings.local_dir / "outbox").glob("*/*"))
    assert [f.suffix for f in files] == [".eml"]
    mail = message_from_bytes(files[0].read_bytes(), policy=default)
    assert mail.get_content_type() == "multipart/alternative"
    [released] = local.broker.receive(TEAMS, max_messages=10)
    send_teams(ServiceBusMessage(body=released.body.encode(), message_id=released.message_id, delivery_count=1,
                                 application_properties={}, user_properties={}))
    teams = json.loads(next((local.settings.local_dir / "outbox" / "teams").glob("*.json")).read_text())
    assert teams["via"] == "bot-proactive" and teams["payload"]["attachments"][0]["content"]["version"] == "1.5"
    rows = outbox_command.list_outbox(local.settings.local_dir / "outbox")
    assert [row["channel"] for row in rows] == ["email", "teams"] and rows[0]["subject"] == "ご契約更新のご案内"


def test_a_body_that_is_not_an_action_message_is_left_to_redelivery_and_the_dlq(local):
    with pytest.raises(InvalidInput):
        send_email(ServiceBusMessage(body=b"{}", message_id="x", application_properties={}, user_properties={}))
    with pytest.raises(InvalidInput):  # a teams action on the email queue
        send_email(queued(action("teams", to="channel:sales")))


def request(method: str, url: str, body: bytes = b"", headers: dict | None = None) -> func.HttpRequest:
    path, _, query = url.partition("?")
    params = dict(part.split("=", 1) for part in query.split("&") if part)
    return func.HttpRequest(method, path, body=body, params=params, headers=headers or {})


def test_unsubscribe_get_confirms_and_one_click_post_suppresses_idempotently(local):
    url = unsubscribe_url(local.settings, "C-001")
    page = unsubscribe(request("GET", url, headers={"Accept-Language": "en-US,en;q=0.9"}))
    assert page.status_code == 200 and b"Unsubscribe" in page.get_body() and b'method="post"' in page.get_body()
    assert not local.suppressions.is_suppressed(customer_id="C-001")  # a link scanner's GET changes nothing
    for _ in range(2):
        done = unsubscribe(request("POST", url, body=b"List-Unsubscribe=One-Click",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"}))
        assert done.status_code == 200 and "配信停止を承りました".encode() in done.get_body()
    assert local.suppressions.is_suppressed(customer_id="C-001")
    # ... and the sender honours it at send time.
    send_email(queued(action(key="campaign:C-001:2026-02")))
    assert not list((local.settings.local_dir / "outbox").glob("email/*.eml"))


def test_unsubscribe_rejects_forged_and_expired_links(local):
    from datetime import UTC, datetime, timedelta

    url = unsubscribe_url(local.settings, "C-001")
    forged = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    assert unsubscribe(request("POST", forged, body=b"List-Unsubscribe=One-Click")).status_code == 401
    old = unsubscribe_url(local.settings, "C-001", now=datetime.now(UTC) - timedelta(days=400))
    assert unsubscribe(request("GET", old)).status_code == 401
    assert unsubscribe(request("GET", "/api/unsubscribe")).status_code == 400
    assert not local.suppressions.is_suppressed(customer_id="C-001")

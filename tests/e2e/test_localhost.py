"""The local host runs a FunctionApp's functions over real HTTP, the local broker and a real clock.

A test-only app covers what `function_app.app` does not register yet (route params, a queue trigger, a timer);
`function_app.app`'s own health route is served too.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
import requests

import function_app
from devhost import NEVER, LocalHost
from shared.broker.local import LocalBroker
from shared.broker.port import OutgoingMessage
from shared.container import Container, get_container
from shared.domain import names
from tests.conftest import make_settings

KEY = "local-test-key"


class Recorder:
    """What the test functions saw, shared with the host's threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.deliveries: list[dict] = []
        self.ticks: list[func.TimerRequest] = []

    def wait_for(self, predicate, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate():
                    return
            time.sleep(0.05)
        raise AssertionError("timed out waiting for the host")


seen = Recorder()
bp = func.Blueprint()


@bp.route(route="items/{item_id}", methods=["GET", "POST"])  # the app default: function key
def item(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({
        "method": req.method, "item_id": req.route_params.get("item_id"), "q": req.params.get("q"),
        "header": req.headers.get("x-trace"), "body": req.get_body().decode(), "url": req.url,
        "same_container": get_container() is not None}),
        status_code=201 if req.method == "POST" else 200, mimetype="application/json",
        headers={"Location": f"/api/items/{req.route_params.get('item_id')}"})


@bp.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("bug")


@bp.service_bus_queue_trigger(arg_name="msg", queue_name=names.TEAMS, connection="ServiceBusConnection")
def flaky(msg: func.ServiceBusMessage) -> None:
    with seen.lock:
        seen.deliveries.append({"id": msg.message_id, "count": msg.delivery_count, "body": msg.get_body().decode(),
                                "props": dict(msg.application_properties), "enqueued": msg.enqueued_time_utc})
    if msg.get_body() == b"poison" or msg.delivery_count < 3:
        raise RuntimeError("fails twice, then succeeds (poison always fails)")


@bp.service_bus_queue_trigger(arg_name="msg", queue_name=names.EMAIL, connection="ServiceBusConnection")
def slow(msg: func.ServiceBusMessage) -> None:
    with seen.lock:
        seen.deliveries.append({"id": msg.message_id, "count": msg.delivery_count})
    time.sleep(2.5)  # longer than the lock: the host renews it, as the Functions host does


@bp.timer_trigger(arg_name="timer", schedule="%SWEEP_SCHEDULE%")
def tick(timer: func.TimerRequest) -> None:
    with seen.lock:
        seen.ticks.append(timer)


test_app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
test_app.register_functions(bp)


@pytest.fixture
def host(azurite, tmp_path):
    seen.deliveries.clear()
    seen.ticks.clear()
    settings = make_settings(tmp_path, TABLES_CONNECTION_STRING=azurite.connection_string,
                             SWEEP_SCHEDULE="* * * * * *", FUNCTIONS_KEY=KEY)
    container = Container(settings)
    container.broker = LocalBroker(settings.local_dir / "broker.sqlite3", max_delivery_count=4,
                                   lock_duration=timedelta(seconds=30))
    with LocalHost(test_app, container, port=0, receive_wait_seconds=0.2) as running:
        yield running
    container.broker.close()


def test_http_route_params_query_headers_and_body(host):
    response = requests.post(f"{host.url}/api/items/C-001?q=1&code={KEY}", data="本文".encode(),
                             headers={"x-trace": "t-1"}, timeout=10)
    assert response.status_code == 201
    assert response.headers["Location"] == "/api/items/C-001"
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body == {"method": "POST", "item_id": "C-001", "q": "1", "header": "t-1", "body": "本文",
                    "url": f"{host.url}/api/items/C-001?q=1&code={KEY}", "same_container": True}


def test_function_key_is_required_unless_anonymous(host):
    assert requests.get(f"{host.url}/api/items/x", timeout=10).status_code == 401
    assert requests.get(f"{host.url}/api/items/x?code=wrong", timeout=10).status_code == 401
    assert requests.get(f"{host.url}/api/items/x", headers={"x-functions-key": KEY}, timeout=10).status_code == 200
    assert requests.get(f"{host.url}/api/boom", timeout=10).status_code == 500  # anonymous: reached the function


def test_unknown_routes_and_methods(host):
    assert requests.get(f"{host.url}/api/nothing", timeout=10).status_code == 404
    assert requests.get(f"{host.url}/items/x?code={KEY}", timeout=10).status_code == 404  # no /api prefix
    assert requests.delete(f"{host.url}/api/items/x?code={KEY}", timeout=10).status_code == 405


def test_queue_trigger_is_retried_by_redelivery_until_it_succeeds(host):
    host.container.broker.publish(names.TEAMS, [OutgoingMessage("hello", "m-1", properties={"rule": "r1"})])
    seen.wait_for(lambda: len(seen.deliveries) >= 3)
    time.sleep(0.5)  # a completed message must not come back
    assert [(d["id"], d["count"]) for d in seen.deliveries] == [("m-1", 1), ("m-1", 2), ("m-1", 3)]
    assert seen.deliveries[0]["props"] == {"rule": "r1"} and seen.deliveries[0]["body"] == "hello"
    assert seen.deliveries[0]["enqueued"].tzinfo is not None
    assert host.container.broker.count(names.TEAMS) == 0
    assert host.container.broker.peek_dead_letters(names.TEAMS) == []


def test_a_poison_message_is_dead_lettered_after_max_delivery_count(host):
    host.container.broker.publish(names.TEAMS, [OutgoingMessage("poison", "p-1")])
    seen.wait_for(lambda: len(seen.deliveries) >= 4)
    deadline = time.monotonic() + 10
    while not host.container.broker.peek_dead_letters(names.TEAMS) and time.monotonic() < deadline:
        time.sleep(0.05)
    [dead] = host.container.broker.peek_dead_letters(names.TEAMS)
    assert (dead.message_id, dead.dead_letter_reason, dead.delivery_count) == ("p-1", "MaxDeliveryCountExceeded", 4)
    assert len(seen.deliveries) == 4


def test_a_long_running_function_keeps_its_lock(azurite, tmp_path):
    settings = make_settings(tmp_path, TABLES_CONNECTION_STRING=azurite.connection_string)
    container = Container(settings)
    container.broker = LocalBroker(settings.local_dir / "broker.sqlite3", lock_duration=timedelta(seconds=1))
    seen.deliveries.clear()
    with LocalHost(test_app, container, port=0, queue_workers=2, receive_wait_seconds=0.1):
        container.broker.publish(names.EMAIL, [OutgoingMessage("report", "long-1")])
        seen.wait_for(lambda: len(seen.deliveries) >= 1)
        deadline = time.monotonic() + 10
        while container.broker.count(names.EMAIL) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert seen.deliveries == [{"id": "long-1", "count": 1}]  # the second worker never got it
    assert container.broker.count(names.EMAIL) == 0
    container.broker.close()


def test_scheduled_message_is_triggered_only_when_due(host):
    due = datetime.now(UTC) + timedelta(seconds=1.5)
    host.container.broker.publish(names.TEAMS, [OutgoingMessage("later", "s-1", scheduled_at=due)])
    time.sleep(0.8)
    assert seen.deliveries == []
    seen.wait_for(lambda: len(seen.deliveries) >= 1)
    assert datetime.now(UTC) >= due


def test_timer_fires_on_its_schedule_from_the_setting(host):
    seen.wait_for(lambda: len(seen.ticks) >= 2, timeout=10)
    first, second = seen.ticks[:2]
    assert isinstance(first, func.TimerRequest) and not first.past_due
    assert first.schedule_status["Last"] == NEVER
    last, following = (datetime.fromisoformat(second.schedule_status[k]) for k in ("Last", "Next"))
    assert last < following <= datetime.fromisoformat(first.schedule_status["Next"]) + timedelta(seconds=5)


def test_function_app_health_over_http(azurite, tmp_path):
    container = Container(make_settings(tmp_path, TABLES_CONNECTION_STRING=azurite.connection_string))
    container.tables.ensure_tables()
    with LocalHost(function_app.app, container, port=0) as running:
        response = requests.get(f"{running.url}/api/health", timeout=10)
    assert response.status_code == 200 and response.json()["status"] == "ok"
    container.broker.close()


def test_stop_releases_the_port(azurite, tmp_path):
    container = Container(make_settings(tmp_path, TABLES_CONNECTION_STRING=azurite.connection_string))
    with LocalHost(test_app, container, port=0, receive_wait_seconds=0.1) as running:
        port = running.port
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/api/boom", timeout=2)
    container.broker.close()


def test_a_keep_alive_connection_survives_a_refused_request_with_a_body(host):
    with requests.Session() as session:
        assert session.post(f"{host.url}/api/items/x", data=b"x" * 5000, timeout=10).status_code == 401
        assert session.post(f"{host.url}/api/nothing", data=b"y" * 5000, timeout=10).status_code == 404
        again = session.post(f"{host.url}/api/items/x?code={KEY}", data=b"z", timeout=10)
    assert again.status_code == 201 and again.json()["body"] == "z"

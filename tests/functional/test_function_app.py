"""The FunctionApp registers every Blueprint's functions with their bindings."""

from __future__ import annotations

import azure.functions as func

from functions.health import health
from shared.container import Container, set_container
from tests.functional.registered import bindings_of


def test_health_is_registered_as_anonymous_get():
    trigger = next(b for b in bindings_of("health") if b["type"] == "httpTrigger")
    assert trigger["route"] == "health" and [str(m.value) for m in trigger["methods"]] == ["GET"]
    assert trigger["authLevel"] == func.AuthLevel.ANONYMOUS


def test_health_answers_ok_when_tables_answer(container):
    set_container(container)
    try:
        response = health(func.HttpRequest("GET", "/api/health", body=b""))
    finally:
        set_container(None)
    assert response.status_code == 200
    assert b'"tables": "ok"' in response.get_body()


def test_health_reports_degraded_storage(tmp_path):
    from shared.devtools.localstack import free_port
    from shared.storage.tables import azurite_connection_string
    from tests.conftest import make_settings

    dead = azurite_connection_string(free_port())  # nothing listens there
    set_container(Container(make_settings(tmp_path, TABLES_CONNECTION_STRING=dead)))
    try:
        response = health(func.HttpRequest("GET", "/api/health", body=b""))
    finally:
        set_container(None)
    assert response.status_code == 503

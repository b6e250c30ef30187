"""The FunctionApp registers every Blueprint's functions with their bindings."""

from __future__ import annotations

import azure.functions as func

import function_app
from functions.health import health
from shared.container import Container, set_container


def bindings_of(name: str) -> list[dict]:
    fn = next(f for f in function_app.app.get_functions() if f.get_function_name() == name)
    return [b.get_dict_repr() for b in fn.get_bindings()]


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
    from shared.localstack import free_port
    from shared.tables import azurite_connection_string
    from tests.conftest import make_settings

    dead = azurite_connection_string(free_port())  # nothing listens there
    set_container(Container(make_settings(tmp_path, TABLES_CONNECTION_STRING=dead)))
    try:
        response = health(func.HttpRequest("GET", "/api/health", body=b""))
    finally:
        set_container(None)
    assert response.status_code == 503

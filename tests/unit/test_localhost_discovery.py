"""The local host discovers functions from the FunctionApp and refuses what it cannot run."""

from __future__ import annotations

import azure.functions as func
import pytest

import function_app
from devhost import discover, resolve_setting, route_pattern
from shared.domain.errors import ConfigError
from tests.conftest import make_settings


def app_with(*register) -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    bp = func.Blueprint()
    for add in register:
        add(bp)
    app.register_functions(bp)
    return app


def test_function_app_health_is_discovered(tmp_path):
    found = discover(function_app.app, make_settings(tmp_path))
    [health] = [f for f in found.http if f.name == "health"]
    assert (health.route, health.methods, health.auth_level) == ("health", frozenset({"GET"}), "anonymous")


def test_every_trigger_kind_is_read_from_its_binding(tmp_path):
    def add(bp):
        @bp.route(route="things/{thing_id}", methods=["PATCH"])
        def things(req): ...

        @bp.timer_trigger(arg_name="timer", schedule="%SWEEP_SCHEDULE%")
        def tick(timer): ...

        @bp.service_bus_queue_trigger(arg_name="msg", queue_name="email", connection="ServiceBusConnection")
        def mail(msg): ...

    found = discover(app_with(add), make_settings(tmp_path, SWEEP_SCHEDULE="0 30 1 * * *"))
    assert [(f.name, f.route, f.methods, f.auth_level) for f in found.http] == [
        ("things", "things/{thing_id}", frozenset({"PATCH"}), "function")]
    assert [(f.name, f.schedule.expression) for f in found.timers] == [("tick", "0 30 1 * * *")]
    assert [(f.name, f.queue, f.arg) for f in found.queues] == [("mail", "email", "msg")]


def test_unknown_setting_reference_is_a_config_error(tmp_path):
    settings = make_settings(tmp_path)
    assert resolve_setting("teams", settings, "f") == "teams"
    assert resolve_setting("%SWEEP_SCHEDULE%", settings, "f") == "0 0 0 * * *"
    with pytest.raises(ConfigError, match="NOPE"):
        resolve_setting("%NOPE%", settings, "f")


def test_unsupported_triggers_are_refused_not_ignored(tmp_path):
    def add(bp):
        @bp.queue_trigger(arg_name="item", queue_name="storage-queue", connection="AzureWebJobsStorage")
        def storage_queue(item): ...

    with pytest.raises(ConfigError, match="queueTrigger"):
        discover(app_with(add), make_settings(tmp_path))


def test_functions_wanting_more_than_the_trigger_are_refused(tmp_path):
    def add(bp):
        @bp.route(route="x")
        def needs_context(req, context): ...

    with pytest.raises(ConfigError, match="only the trigger argument"):
        discover(app_with(add), make_settings(tmp_path))


@pytest.mark.parametrize(("route", "path", "params"), [
    ("health", "/health", {}),
    ("health", "/health/", {}),
    ("opportunities/{id}", "/opportunities/O-1", {"id": "O-1"}),
    ("approvals/{id:guid}", "/approvals/abc", {"id": "abc"}),
    ("files/{*rest}", "/files/a/b/c", {"rest": "a/b/c"}),
    ("items/{id?}", "/items", {}),
])
def test_route_templates(route, path, params):
    found = route_pattern(route).match(path)
    assert found and {k: v for k, v in found.groupdict().items() if v is not None} == params


def test_route_templates_do_not_overmatch():
    assert not route_pattern("opportunities/{id}").match("/opportunities/a/b")
    assert not route_pattern("health").match("/healthz")


def test_discovery_leaves_the_app_usable_by_a_plain_get_functions(tmp_path):
    discover(function_app.app, make_settings(tmp_path))
    discover(function_app.app, make_settings(tmp_path))
    assert "health" in [f.get_function_name() for f in function_app.app.get_functions()]
    function_app.app.functions_bindings = None  # what a plain call leaves behind would break the next one

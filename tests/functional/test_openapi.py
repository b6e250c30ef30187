"""The OpenAPI document describes every HTTP route the FunctionApp registers, is served at /api/openapi.json, and
docs/openapi.json is the same document."""

from __future__ import annotations

import json

import azure.functions as func

from devhost import route_prefix
from functions.openapi import openapi
from shared.settings import APP_ROOT
from shared.web.openapi import document, document_text
from tests.functional.registered import bindings_of, registered_functions

METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


def registered_routes() -> dict[str, set[str]]:
    """'/api/<route>' → HTTP methods, for every HTTP trigger registered on function_app.app."""
    routes: dict[str, set[str]] = {}
    prefix = route_prefix()
    for name in registered_functions():
        for binding in bindings_of(name):
            if binding["type"] != "httpTrigger":
                continue
            path = "/" + "/".join(part for part in (prefix, binding.get("route") or name) if part)
            methods = {str(getattr(m, "value", m)).lower() for m in binding.get("methods") or METHODS}
            routes.setdefault(path, set()).update(methods)
    return routes


def test_every_registered_http_route_is_in_the_openapi_document():
    paths = document()["paths"]
    missing = []
    for path, methods in sorted(registered_routes().items()):
        described = {m for m in paths.get(path, {}) if m in METHODS}
        missing += [f"{method.upper()} {path}" for method in sorted(methods - described)]
    assert not missing, (
        f"HTTP routes registered on function_app.app but not described in the OpenAPI document: {missing}. "
        "Add them to shared/web/openapi.py, then run `python -m shared.web.openapi > docs/openapi.json`.")
    stale = sorted(set(paths) - set(registered_routes()))
    assert not stale, f"the OpenAPI document describes routes nobody registers: {stale}"


def test_docs_openapi_json_is_the_served_document():
    kept = (APP_ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert kept == document_text(), \
        "docs/openapi.json is out of date: run `python -m shared.web.openapi > docs/openapi.json`"


def test_the_app_serves_the_document():
    response = openapi(func.HttpRequest("GET", "http://127.0.0.1:7071/api/openapi.json", body=b""))
    assert response.status_code == 200 and response.mimetype == "application/json"
    served = json.loads(response.get_body())
    assert served["openapi"].startswith("3.") and served == document()


def test_the_document_is_valid_openapi_3():
    import schemathesis

    schema = schemathesis.openapi.from_dict(document())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        f"{method.upper()} {path}" for path, methods in registered_routes().items() for method in methods}

"""The OpenAPI 3 description of every HTTP route, served at `GET /api/openapi.json` and kept in docs/openapi.json.

One document, built here (the deployed package carries it; docs/ is not deployed). A test checks that every HTTP
route registered on function_app's FunctionApp is described, and that docs/openapi.json is this document:
regenerate it with `python -m shared.web.openapi > docs/openapi.json` after changing a route.
"""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from typing import Any

JSON = "application/json"
HTML = "text/html"

FUNCTION_KEY = [{"functionKey": []}, {"functionKeyHeader": []}]
ANONYMOUS: list = []


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*statuses: int) -> dict:
    texts = {400: "bad input (names the field)", 401: "missing or bad credential, signature or token",
             404: "not found, or the CRM source is not enabled", 405: "method not allowed",
             409: "conflict (already decided, concurrent change)", 413: "body over the size limit",
             429: "throttled (Retry-After)", 503: "a dependency is unavailable: retry"}
    return {str(status): _json(_ref("Error"), texts[status]) for status in statuses}


def _header(name: str, description: str, required: bool = False) -> dict:
    return {"name": name, "in": "header", "required": required, "description": description,
            "schema": {"type": "string"}}


def _query(name: str, description: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


def _webhook(summary: str, description: str, body: dict, headers: list[dict], *, keyed: bool,
             media: str = JSON, accepted: dict | None = None) -> dict:
    return {"post": {
        "summary": summary, "description": description, "tags": ["crm"],
        "security": FUNCTION_KEY if keyed else ANONYMOUS,
        "parameters": headers,
        "requestBody": {"required": True, "content": {media: {"schema": body}}},
        "responses": {"202": _json(_ref("Receipt"), "every event of the request is durably queued"),
                      **(accepted or {}), **_errors(400, 401, 404, 413, 503)},
    }}


def _document() -> dict[str, Any]:
    token = _query("token", "signed link token")
    paths: dict[str, Any] = {
        "/api/health": {"get": {
            "summary": "Configuration and Table Storage check; enabled CRM sources", "tags": ["ops"],
            "security": ANONYMOUS,
            "responses": {"200": _json(_ref("Health"), "healthy"), "503": _json(_ref("Health"), "degraded")}}},
        "/api/openapi.json": {"get": {
            "summary": "This document", "tags": ["ops"], "security": ANONYMOUS,
            "responses": {"200": {"description": "OpenAPI 3 document", "content": {JSON: {"schema": {
                "type": "object"}}}}}}},
        "/api/crm/dataverse": _webhook(
            "Dataverse webhook (RemoteExecutionContext)",
            "Register with WebhookKey authentication: Dataverse sends the Functions key as ?code=.",
            _ref("RemoteExecutionContext"),
            [_header("x-ms-dynamics-msg-size-exceeded", "set by Dataverse when it stripped the images")],
            keyed=True),
        "/api/crm/hubspot": _webhook(
            "HubSpot webhook (v3 signature)", "HMAC-SHA256 of method + URI + body + timestamp, 5-minute window.",
            {"type": "array", "items": {"type": "object"}, "minItems": 1},
            [_header("X-HubSpot-Signature-v3", "base64 HMAC-SHA256 with the app's client secret", True),
             _header("X-HubSpot-Request-Timestamp", "epoch milliseconds", True)], keyed=False),
        "/api/crm/zoho": _webhook(
            "Zoho CRM notification", "The watch's token comes back in the body (or X-Zoho-Webhook-Token).",
            _ref("ZohoNotification"), [_header("X-Zoho-Webhook-Token", "the shared token (workflow webhooks)")],
            keyed=False),
        "/api/crm/salesforce": _webhook(
            "Salesforce Outbound Message (SOAP)",
            "Function-level: the endpoint URL carries ?code=<key> (Salesforce signs nothing). Answered with the "
            "SOAP Ack (200); the receipt travels in X-Crmflow-Accepted.",
            {"type": "string", "description": "SOAP 1.1 Envelope with notifications; no DTD"},
            [_header("SOAPAction", "as Salesforce sends it")], keyed=True, media="text/xml",
            accepted={"200": {"description": "SOAP Ack: the notifications are queued",
                              "headers": {"X-Crmflow-Accepted": {"schema": {"type": "integer"}}},
                              "content": {"text/xml": {"schema": {"type": "string"}}}}}),
        "/api/crm/generic": _webhook(
            "Generic signed webhook (canonical customer JSON)",
            "X-Crmflow-Signature: v2=<hex HMAC-SHA256 of 'v2\\n' + timestamp + '\\n' + operation + '\\n' + event id "
            "+ '\\n' + body> (README); v1 (sha256=<hex> of timestamp.body) only without the operation and "
            "event-id headers.",
            _ref("Customer"),
            [_header("X-Crmflow-Timestamp", "Unix seconds (5-minute window)", True),
             _header("X-Crmflow-Signature", "v2=<hex> (or v1 sha256=<hex>)", True),
             _header("X-Crmflow-Operation", "create | update | delete (default update); signed in v2"),
             _header("X-Crmflow-Event-Id", "the sender's stable event id (deduplication); signed in v2")],
            keyed=False),
        "/api/opportunities": {"get": {
            "summary": "List ledger rows", "tags": ["opportunities"], "security": FUNCTION_KEY,
            "parameters": [_query(name, f"filter on {name}") for name in
                           ("status", "owner_email", "rule", "kind", "customer_id")] + [
                _query("month", "YYYY-MM", {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}),
                _query("limit", "at most 1,000", {"type": "integer", "minimum": 1, "maximum": 1000})],
            "responses": {"200": _json({"type": "object", "properties": {
                "count": {"type": "integer"}, "items": {"type": "array", "items": _ref("Opportunity")}}},
                "matching opportunities"), **_errors(400, 401)}}},
        "/api/opportunities/{id}": {"patch": {
            "summary": "Record what the rep did: in_progress, won (+ amount), lost", "tags": ["opportunities"],
            "security": FUNCTION_KEY,
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {JSON: {"schema": {
                "type": "object", "required": ["status"], "properties": {
                    "status": {"type": "string", "enum": ["in_progress", "won", "lost"]},
                    "amount": {"type": "number", "minimum": 0}}}}}},
            "responses": {"200": _json(_ref("Opportunity"), "updated"), **_errors(400, 401, 404, 409)}}},
        "/api/opportunities/{id}/outcome": {
            "get": {"summary": "The rep's answer page for an opportunity card", "tags": ["opportunities"],
                    "security": ANONYMOUS,
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                                   token, _query("decision", "preselected answer")],
                    "responses": {"200": {"description": "page (HTML, or JSON with Accept: application/json)",
                                          "content": {HTML: {"schema": {"type": "string"}},
                                                      JSON: {"schema": _ref("Opportunity")}}},
                                  **_errors(400, 401, 404, 409)}},
            "post": {"summary": "Record the rep's answer: in progress, won + amount, not now",
                     "tags": ["opportunities"],
                     "security": ANONYMOUS,
                     "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                                    token],
                     "requestBody": {"required": True, "content": {
                         JSON: {"schema": _ref("Outcome")}, "application/x-www-form-urlencoded": {
                             "schema": _ref("Outcome")}}},
                     "responses": {"200": {"description": "recorded", "content": {
                         JSON: {"schema": _ref("Opportunity")}, HTML: {"schema": {"type": "string"}}}},
                         **_errors(400, 401, 404, 409)}}},
        "/api/approvals/{id}": {
            "get": {"summary": "Review page of a held message", "tags": ["approvals"], "security": ANONYMOUS,
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                                   token],
                    "responses": {"200": {"description": "review page (HTML, or JSON with Accept: "
                                                         "application/json)",
                                          "content": {HTML: {"schema": {"type": "string"}}}},
                                  **_errors(400, 401, 404, 409)}},
            "post": {"summary": "Approve or reject", "tags": ["approvals"], "security": ANONYMOUS,
                     "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                                    token],
                     "requestBody": {"required": True, "content": {
                         JSON: {"schema": _ref("Decision")},
                         "application/x-www-form-urlencoded": {"schema": _ref("Decision")}}},
                     "responses": {"200": {"description": "decided", "content": {
                         JSON: {"schema": {"type": "object"}}, HTML: {"schema": {"type": "string"}}}},
                         **_errors(400, 401, 404, 409)}}},
        "/api/unsubscribe": {
            "get": {"summary": "Unsubscribe confirmation page", "tags": ["delivery"], "security": ANONYMOUS,
                    "parameters": [token],
                    "responses": {"200": {"description": "page", "content": {HTML: {"schema": {"type": "string"}}}},
                                  "400": {"description": "no or bad token (page)"},
                                  "401": {"description": "forged or expired token (page)"}}},
            "post": {"summary": "Unsubscribe (RFC 8058 one-click)", "tags": ["delivery"], "security": ANONYMOUS,
                     "parameters": [token],
                     "requestBody": {"required": False, "content": {"application/x-www-form-urlencoded": {
                         "schema": {"type": "object", "properties": {
                             "List-Unsubscribe": {"type": "string", "enum": ["One-Click"]},
                             "token": {"type": "string"}}}}}},
                     "responses": {"200": {"description": "done (page)",
                                           "content": {HTML: {"schema": {"type": "string"}}}},
                                   "400": {"description": "no or bad token (page)"},
                                   "401": {"description": "forged or expired token (page)"}}}},
        "/api/dashboard/configure": {"get": {
            "summary": "Teams tab configuration page", "tags": ["dashboard"], "security": ANONYMOUS,
            "responses": {"200": {"description": "page", "content": {HTML: {"schema": {"type": "string"}}}}}}},
        "/api/dashboard/opportunities/{id}": {"patch": {
            "summary": "Change an opportunity from the dashboard work list", "tags": ["dashboard"],
            "security": ANONYMOUS,
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {JSON: {"schema": {
                "type": "object", "properties": {"status": {"type": "string"}, "amount": {"type": "number"}}}}}},
            "responses": {"200": _json(_ref("Opportunity"), "updated"), **_errors(400, 401, 404, 409)}}},
        "/api/teams/tab": {"get": {
            "summary": "The dashboard as a Teams tab", "tags": ["dashboard"], "security": ANONYMOUS,
            "responses": {"200": {"description": "page", "content": {HTML: {"schema": {"type": "string"}}}},
                          **_errors(401)}}},
        "/api/teams/teams.js": {"get": {
            "summary": "Script of the Teams tab", "tags": ["dashboard"], "security": ANONYMOUS,
            "responses": {"200": {"description": "JavaScript", "content": {"application/javascript": {
                "schema": {"type": "string"}}}}}}},
        "/api/customers/{id}/journey": {"get": {
            "summary": "A customer's journey stage and history", "tags": ["journeys"], "security": FUNCTION_KEY,
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _json({"type": "object", "properties": {
                "customer": {"type": "string"}, "stage": {"type": "string", "nullable": True},
                "since": {"type": "string", "nullable": True},
                "history": {"type": "array", "items": {"type": "object", "properties": {
                    "from": {"type": "string", "nullable": True}, "to": {"type": "string"},
                    "at": {"type": "string"}, "cause": {"type": "string"}}}}}}, "the journey"),
                **_errors(400, 401, 404)}}},
        "/api/dashboard": {"get": {
            "summary": "Opportunities, conversion, revenue, journey stages, delivery health", "tags": ["dashboard"],
            "security": FUNCTION_KEY,
            "parameters": [_query("days", "delivery window, 1..90 (default 7)",
                                  {"type": "integer", "minimum": 1, "maximum": 90}),
                           _query("format", "html for the page", {"type": "string", "enum": ["html", "json"]})],
            "responses": {"200": {"description": "report", "content": {JSON: {"schema": {"type": "object"}},
                                                                       HTML: {"schema": {"type": "string"}}}},
                          **_errors(400, 401)}}},
    }
    person = {"type": "object", "nullable": True, "properties": {
        "name": {"type": "string", "nullable": True, "maxLength": 4000},
        "email": {"type": "string", "nullable": True, "maxLength": 4000},
        "aad_object_id": {"type": "string", "nullable": True}}}
    schemas = {
        "Error": {"type": "object", "required": ["error"], "properties": {
            "error": {"type": "string"}, "message": {"type": "string"}, "retryable": {"type": "boolean"},
            "file": {"type": "string"}, "line": {"type": "integer"}, "field": {"type": "string"},
            "rule": {"type": "string"}}},
        "Receipt": {"type": "object", "required": ["status", "source", "accepted", "message_ids"], "properties": {
            "status": {"type": "string", "enum": ["accepted"]}, "source": {"type": "string"},
            "accepted": {"type": "integer"}, "message_ids": {"type": "array", "items": {"type": "string"}},
            "received_at": {"type": "string", "format": "date-time"}}},
        "Health": {"type": "object", "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]}, "checks": {"type": "object"},
            "crm_sources": {"type": "array", "items": {"type": "string"}}, "elapsed_ms": {"type": "number"}}},
        "Customer": {"type": "object", "required": ["id"], "description": "canonical customer (DESIGN.md); "
                     "text fields at most 4,000 characters; only the fields sent are applied",
                     "properties": {
                         "id": {"type": "string", "maxLength": 200}, "name": {"type": "string", "maxLength": 4000},
                         "contact_name": {"type": "string"}, "email": {"type": "string"}, "owner": person,
                         "manager": person, "locale": {"type": "string"}, "timezone": {"type": "string"},
                         "products": {"type": "array", "items": {"type": "string"}},
                         "purchases": {"type": "array", "items": {"type": "object"}},
                         "plan": {"type": "string"}, "contract_start": {"type": "string", "format": "date"},
                         "contract_end": {"type": "string", "format": "date"},
                         "contract_status": {"type": "string"}, "birthday": {"type": "string", "format": "date"},
                         "annual_spend": {"type": "number"}, "usage": {"type": "object"},
                         "deals": {"type": "array", "items": {"type": "object"}},
                         "email_opt_out": {"type": "boolean"}, "requires_approval": {"type": "boolean"},
                         "crm_url": {"type": "string"}, "custom": {"type": "object"},
                         "updated_at": {"type": "string", "format": "date-time"}}},
        "RemoteExecutionContext": {"type": "object", "required": ["MessageName", "PrimaryEntityName",
                                                                  "PrimaryEntityId"], "properties": {
            "MessageName": {"type": "string"}, "PrimaryEntityName": {"type": "string"},
            "PrimaryEntityId": {"type": "string", "format": "uuid"}, "OperationId": {"type": "string"},
            "RequestId": {"type": "string"}, "CorrelationId": {"type": "string"},
            "OperationCreatedOn": {"type": "string", "description": "/Date(ms)/"}, "Depth": {"type": "integer"},
            "InputParameters": {"type": "array", "items": {"type": "object"}},
            "PostEntityImages": {"type": "array", "items": {"type": "object"}},
            "PreEntityImages": {"type": "array", "items": {"type": "object"}}}},
        "ZohoNotification": {"type": "object", "properties": {
            "server_time": {"type": "integer"}, "module": {"type": "string"},
            "ids": {"type": "array", "items": {"type": "string"}}, "operation": {"type": "string"},
            "channel_id": {"type": "string"}, "token": {"type": "string"},
            "affected_values": {"type": "array", "items": {"type": "object"}}}},
        "Opportunity": {"type": "object", "properties": {
            "id": {"type": "string"}, "rule": {"type": "string"}, "kind": {"type": "string"},
            "customer_id": {"type": "string"}, "status": {"type": "string"}, "amount": {"type": "number"}}},
        "Outcome": {"type": "object", "required": ["decision", "token"], "properties": {
            "decision": {"type": "string"}, "amount": {"type": "number", "minimum": 0},
            "token": {"type": "string"}}},
        "Decision": {"type": "object", "required": ["decision", "token"], "properties": {
            "decision": {"type": "string", "enum": ["approve", "reject"]}, "token": {"type": "string"}}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "crmflow", "version": "1",
                 "description": "CRM data in, timely actions out. Routes are identical in Azure and on the local "
                                "host (`crmflow serve`)."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "functionKey": {"type": "apiKey", "in": "query", "name": "code"},
            "functionKeyHeader": {"type": "apiKey", "in": "header", "name": "x-functions-key"}}},
    }


@lru_cache(maxsize=1)
def _document_text() -> str:
    return json.dumps(_document(), ensure_ascii=False, indent=2) + "\n"


def document() -> dict[str, Any]:
    """The OpenAPI document (a fresh copy each call)."""
    return json.loads(_document_text())


def document_text() -> str:
    """The document as docs/openapi.json holds it."""
    return _document_text()


if __name__ == "__main__":
    sys.stdout.write(document_text())

"""Shared by the CRM webhook tests and the benchmark: vendor sample payloads, signed the way each vendor signs."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from shared.crm import generic, hubspot
from shared.crm.common import WebhookRequest

SAMPLES = Path(__file__).parent / "fixtures" / "crm"
NOW = datetime(2025, 11, 22, 8, 0, 5, tzinfo=UTC)
HUBSPOT_SECRET = "hubspot-client-secret-for-tests"
GENERIC_SECRET = "generic-webhook-secret-for-tests"
ZOHO_TOKEN = "TOKEN_FOR_VERIFICATION_OF_1000000068001"
SALESFORCE_ORG = "00D000000000001AAA"
BASE = "http://127.0.0.1:7071/api/crm"

SECRETS_ENV = {
    "HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET, "GENERIC_WEBHOOK_SECRET": GENERIC_SECRET,
    "ZOHO_WEBHOOK_TOKEN": ZOHO_TOKEN, "SALESFORCE_ORG_IDS": SALESFORCE_ORG,
}


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def dataverse_request(body: bytes | None = None, **headers: str) -> WebhookRequest:
    return WebhookRequest.build("POST", f"{BASE}/dataverse?code=functions-key",
                                sample("dataverse_contact_update.json") if body is None else body,
                                {"Content-Type": "application/json", **headers}, {"code": "functions-key"})


def hubspot_request(body: bytes | None = None, now: datetime = NOW, secret: str = HUBSPOT_SECRET,
                    url: str = f"{BASE}/hubspot", **headers: str) -> WebhookRequest:
    body = sample("hubspot_events.json") if body is None else body
    timestamp = str(int(now.timestamp() * 1000))
    signature = hubspot.sign_v3(secret, "POST", url, body, timestamp)
    return WebhookRequest.build("POST", url, body, {
        "Content-Type": "application/json", "X-HubSpot-Signature-v3": signature,
        "X-HubSpot-Request-Timestamp": timestamp, **headers})


def salesforce_request(body: bytes | None = None, **headers: str) -> WebhookRequest:
    return WebhookRequest.build("POST", f"{BASE}/salesforce",
                                sample("salesforce_outbound.xml") if body is None else body,
                                {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""', **headers})


def zoho_request(body: bytes | None = None, **headers: str) -> WebhookRequest:
    return WebhookRequest.build("POST", f"{BASE}/zoho", sample("zoho_notification.json") if body is None else body,
                                {"Content-Type": "application/json", **headers})


def generic_request(body: bytes | None = None, now: datetime = NOW, secret: str = GENERIC_SECRET,
                    version: str | None = None, **headers: str) -> WebhookRequest:
    """Signed v2 when it carries X-Crmflow-Operation or X-Crmflow-Event-Id (or version="v2"), else v1."""
    body = sample("generic_customer.json") if body is None else body
    timestamp = str(int(now.timestamp()))
    operation = headers.get("X-Crmflow-Operation", "").strip()
    event_id = headers.get("X-Crmflow-Event-Id", "").strip()
    if version is None:
        version = "v2" if operation or event_id else "v1"
    signature = (generic.sign_v2(secret, timestamp, body, operation, event_id) if version == "v2"
                 else "sha256=" + generic.sign(secret, timestamp, body))
    return WebhookRequest.build("POST", f"{BASE}/generic", body, {
        "Content-Type": "application/json", "X-Crmflow-Timestamp": timestamp,
        "X-Crmflow-Signature": signature, **headers})


def wall_clock_now() -> datetime:
    return datetime.fromtimestamp(time.time(), UTC)


class NoBroker:
    """Parsing tests never publish."""

    def publish(self, queue, messages):  # pragma: no cover - would be a test bug
        raise AssertionError("parse() must not publish")


def parsing_intake(tmp_path: Path):
    """A WebhookIntake with every source's secret set, on the tests' fixed clock, that must never publish."""
    from shared.crm.ingest import WebhookIntake
    from tests.conftest import make_settings

    return WebhookIntake(make_settings(tmp_path, **SECRETS_ENV), NoBroker(), clock=lambda: NOW)

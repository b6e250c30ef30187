"""Webhook intake: verify, parse, publish to `crm-events`, return a receipt. Nothing slow happens here.

`WebhookIntake.receive(source, request)` is the one domain call behind every `POST /api/crm/<source>`. Either
every event of the request is durably queued (one atomic broker publish) and a receipt comes back, or an error
is raised and nothing is queued: bad input → InvalidInput/Unauthorized/PayloadTooLarge (4xx), broker trouble →
TransientError (503, so the CRM retries). Logs carry sources, counts and hashed ids, never personal data.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from shared.broker.port import Broker, OutgoingMessage
from shared.crm import dataverse, generic, hubspot, salesforce, zoho
from shared.crm.common import ReplayGuard, WebhookRequest, check_size, message_id_for
from shared.crm.mapping import VendorMapping, load_mapping
from shared.domain.errors import CrmflowError, InvalidInput, NotFound
from shared.domain.events import SOURCES, CrmEvent
from shared.domain.names import CRM_EVENTS
from shared.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Receipt:
    """What the webhook answers (202): how many events were queued and their broker message ids."""

    source: str
    accepted: int
    message_ids: tuple[str, ...]
    received_at: datetime

    def to_dict(self) -> dict:
        return {"status": "accepted", "source": self.source, "accepted": self.accepted,
                "message_ids": list(self.message_ids), "received_at": self.received_at.isoformat()}


class WebhookIntake:
    """Verifies and parses CRM webhooks, then publishes their canonical events to `crm-events`."""

    def __init__(self, settings: Settings, broker: Broker, clock: Callable[[], datetime] | None = None,
                 mappings_dir: Path | None = None):
        self.settings = settings
        self.broker = broker
        self.clock = clock or (lambda: datetime.now(UTC))
        self.mappings_dir = mappings_dir or settings.mappings_dir
        self.replays = ReplayGuard()

    def mapping(self, vendor: str) -> VendorMapping:
        return load_mapping(self.mappings_dir, vendor)

    def parse(self, source: str, request: WebhookRequest) -> list[CrmEvent]:
        """Verify and parse without publishing (the benchmark and tests use it to isolate costs)."""
        if source not in SOURCES:
            raise NotFound(f"unknown CRM {source[:40]!r}")
        check_size(request)
        now = self.clock()
        settings = self.settings
        if source == "dataverse":
            return dataverse.parse_webhook(request, self.mapping("dataverse"), now)
        if source == "hubspot":
            hubspot.verify(request, settings.hubspot_client_secret, now,
                           hubspot.public_url_candidates(request, settings.public_base_url), self.replays)
            return hubspot.parse_webhook(request, self.mapping("hubspot"), now)
        if source == "salesforce":
            return salesforce.parse_webhook(request, self.mapping("salesforce"), settings.salesforce_org_ids, now)
        if source == "zoho":
            return zoho.parse_webhook(request, self.mapping("zoho"), settings.zoho_webhook_token, now)
        generic.verify(request, settings.generic_webhook_secret, now, self.replays)
        return generic.parse_webhook(request, now)

    def receive(self, source: str, request: WebhookRequest) -> Receipt:
        try:
            events = self.parse(source, request)
        except CrmflowError as exc:
            # Log the class and the field only: reasons may quote submitted values (personal data).
            where = exc.location.field if isinstance(exc, InvalidInput) else None
            log.warning("crm webhook %s refused: %s%s", source, type(exc).__name__, f" at {where}" if where else "")
            raise
        except RecursionError:
            raise InvalidInput("body is nested too deeply") from None
        messages = [OutgoingMessage(body=event.to_json(), message_id=message_id_for(event),
                                    subject=f"{event.source}.{event.entity}.{event.operation}",
                                    properties={"source": event.source, "entity": event.entity,
                                                "operation": event.operation})
                    for event in events]
        if messages:
            self.broker.publish(CRM_EVENTS, messages)  # one atomic batch: all events of the request or none
        log.info("crm webhook %s: %d event(s) queued %s", source, len(messages),
                 [_hashed(m.message_id) for m in messages[:5]])
        return Receipt(source, len(messages), tuple(m.message_id for m in messages), self.clock())


def _hashed(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]

"""Webhook intake: verify, parse, publish to `crm-events`, return a receipt. Nothing slow happens here.

`WebhookIntake.receive(source, request)` is the one domain call behind every `POST /api/crm/<source>`. Either
every event of the request is durably queued (one atomic broker publish) and a receipt comes back, or an error
is raised and nothing is queued: bad input → InvalidInput/Unauthorized/PayloadTooLarge (4xx), broker trouble →
TransientError (503, so the CRM retries). Logs carry sources, counts and hashed ids, never personal data.
Before any parsing, a source without its credential setting is refused as not enabled (404). After parsing, every
event's text is bounded (MAX_TEXT_CHARS, InvalidInput naming the field) and its times are clamped to receipt +
MAX_CLOCK_SKEW, whatever the source.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared.broker.port import Broker, OutgoingMessage
from shared.crm import dataverse, generic, hubspot, salesforce, zoho
from shared.crm.common import ReplayGuard, WebhookRequest, check_size, message_id_for
from shared.crm.mapping import VendorMapping, load_mapping
from shared.domain.errors import CrmflowError, InvalidInput, Location, NotFound, SourceNotEnabled
from shared.domain.events import SOURCES, CrmEvent
from shared.domain.model import MAX_TEXT_CHARS
from shared.domain.names import CRM_EVENTS
from shared.settings import Settings

log = logging.getLogger(__name__)

# How far ahead of the receive time a CRM's clock may be. A later event time (a forged or broken
# LastModifiedDate, say) is replaced by the receive time: the change still applies, but it cannot claim to be newer
# than changes that arrive after it, so it never pins a record against later legitimate updates.
MAX_CLOCK_SKEW = timedelta(minutes=5)

# The credential each source needs: without it the source is off (404 "source not enabled"). Dataverse's
# credential is the Functions key, checked by the host before the function runs.
SOURCE_SETTINGS = {"hubspot": ("hubspot_client_secret", "HUBSPOT_CLIENT_SECRET"),
                   "salesforce": ("salesforce_org_ids", "SALESFORCE_ORG_IDS"),
                   "zoho": ("zoho_webhook_token", "ZOHO_WEBHOOK_TOKEN"),
                   "generic": ("generic_webhook_secret", "GENERIC_WEBHOOK_SECRET")}


def enabled_sources(settings: Settings) -> dict[str, bool]:
    """Which CRM webhooks accept requests (for GET /api/health)."""
    return {source: source not in SOURCE_SETTINGS or bool(getattr(settings, SOURCE_SETTINGS[source][0]))
            for source in SOURCES}


def bound_event_time(event: CrmEvent, received_at: datetime) -> CrmEvent:
    """The event with `occurred_at` and `record["updated_at"]` no later than receipt + MAX_CLOCK_SKEW (clamped to
    the receive time). Earlier times need no bound: an older event only ever loses to newer data."""
    limit = received_at + MAX_CLOCK_SKEW
    changes: dict = {}
    if event.occurred_at is not None and _aware(event.occurred_at) > limit:
        changes["occurred_at"] = received_at
    stamp = (event.record or {}).get("updated_at")
    if isinstance(stamp, str):
        try:
            too_late = _aware(datetime.fromisoformat(stamp)) > limit
        except ValueError:
            too_late = False
        if too_late:
            changes["record"] = {**event.record, "updated_at": received_at.isoformat()}
    if changes:
        log.warning("crm %s event time is after its receipt: clamped to the receive time", event.source)
        return replace(event, **changes)
    return event


def check_text_lengths(event: CrmEvent, index: int) -> None:
    """InvalidInput naming the field when any text in the event's record is longer than a customer field may be
    (the same limit the import and the generic endpoint apply through `Customer.from_dict`)."""
    stack: list[tuple[str, object]] = [("", event.record or {})]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if len(value) > MAX_TEXT_CHARS:
                raise InvalidInput(f"is {len(value):,} characters long; at most {MAX_TEXT_CHARS:,} are accepted",
                                   Location(field=f"events[{index}].{path}" if index else path))
        elif isinstance(value, dict):
            stack.extend((f"{path}.{key}" if path else str(key), item) for key, item in value.items())
        elif isinstance(value, list | tuple):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
        if not enabled_sources(self.settings)[source]:
            raise SourceNotEnabled(source, SOURCE_SETTINGS[source][1])
        check_size(request)
        now = self.clock()
        events = self._parse(source, request, now)
        for index, event in enumerate(events):
            check_text_lengths(event, index)
        return [bound_event_time(event, now) for event in events]

    def _parse(self, source: str, request: WebhookRequest, now: datetime) -> list[CrmEvent]:
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
        except SourceNotEnabled as exc:
            log.warning("crm webhook %s refused: %s", source, exc.message)  # names the setting, for the operator
            raise
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

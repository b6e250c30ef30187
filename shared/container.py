"""The composition root: builds settings, stores, broker and senders once per process.

Functions get it through `get_container()`; tests build their own with `Container(settings)` pointed at Azurite and
local adapters, or `Container(settings, storage=MemoryStorage())` for the in-memory storage backend (no Azurite).
Every component is created lazily on first use, so a function only pays for what it touches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

import requests

from shared.approvals.flow import ApprovalFlow, ApprovalStore
from shared.broker.local import LocalBroker
from shared.broker.port import Broker, OutgoingMessage
from shared.contact import ContactGuard, ContactLog, ContactPolicy, load_contact_policy
from shared.contact.digest import DIGEST_KIND, DigestBook, RepRouter, render_digest
from shared.customers.store import CustomerStore
from shared.delivery.http import DEFAULT_TIMEOUT, ApiClient
from shared.delivery.idempotency import DedupeStore
from shared.delivery.ratelimit import RateLimiter
from shared.delivery.service import DeliveryService, Outcome
from shared.delivery.suppressions import SuppressionStore
from shared.delivery.tokens import (
    BOT_SCOPE,
    GRAPH_RESOURCE,
    GRAPH_SCOPE,
    ClientCredentialTokens,
    ManagedIdentityTokens,
    TokenProvider,
)
from shared.delivery.transports import DirectoryCache, GraphMailTransport, OutboxTransport, TeamsTransport, Transport
from shared.domain.errors import ConfigError
from shared.domain.messages import ActionMessage
from shared.domain.names import DELIVERIES
from shared.domain.vocabulary import Channel, DeliveryStatus
from shared.journeys.history import JourneyHistory
from shared.journeys.loader import load_journey
from shared.journeys.model import Journey
from shared.journeys.service import JourneyRunner
from shared.opportunities.ledger import OpportunityLedger
from shared.pipeline.planner import Planner
from shared.rules import Evaluator, RuleSet, load_ruleset
from shared.settings import Settings
from shared.storage.backend import Storage
from shared.storage.tables import TableAccess, TableStorage

if TYPE_CHECKING:  # CRM modules load only where they are used
    from shared.crm.dataverse import DataverseClient
    from shared.crm.ingest import WebhookIntake
    from shared.crm.tasks import TaskWriter
    from shared.dashboard.service import DashboardService
    from shared.pipeline.changes import RecordFetcher


class Container:
    def __init__(self, settings: Settings, storage: Storage | None = None):
        """`storage`: the storage backend to use instead of Table Storage (e.g. `MemoryStorage()` in tests)."""
        self.settings = settings
        if storage is not None:
            self.storage = storage

    # --- storage -------------------------------------------------------------------------------------------
    @cached_property
    def tables(self) -> TableAccess:
        """SDK clients of the Table Storage account (the Table Storage backend's, and benchmarks' request hooks)."""
        return TableAccess(self.settings)

    @cached_property
    def storage(self) -> Storage:
        """Every store's backend, built once: Table Storage (Azurite locally) unless one was passed in."""
        return TableStorage(self.tables)

    @cached_property
    def customers(self) -> CustomerStore:
        return CustomerStore(self.storage, self.settings.customer_shards)

    # --- rules ---------------------------------------------------------------------------------------------
    @cached_property
    def ruleset(self) -> RuleSet:
        """Rules and templates, checked and compiled once per process (InvalidInput lists every problem)."""
        return load_ruleset(self.settings.rules_dir, self.settings.templates_dir,
                            default_locale=self.settings.default_locale, segments=self.settings.segments_file)

    @cached_property
    def evaluator(self) -> Evaluator:
        return Evaluator(self.ruleset, self.settings)

    # --- journeys ---------------------------------------------------------------------------------------------
    @cached_property
    def journey(self) -> Journey | None:
        """The journey under JOURNEYS_DIR, checked with the rules' templates (None: no journey defined)."""
        return load_journey(self.settings.journeys_dir, self.ruleset.renderer, self.ruleset.segments)

    @cached_property
    def journey_history(self) -> JourneyHistory:
        return JourneyHistory(self.storage)

    @cached_property
    def journeys(self) -> JourneyRunner | None:
        """Moves customers through the journey on change events and in the sweep (None without a journey)."""
        if self.journey is None:
            return None
        return JourneyRunner(self.journey, self.evaluator, self.planner, self.customers, self.journey_history,
                             self.broker, self.settings)

    # --- pipeline: broker, ledger --------------------------------------------------------------------------
    @cached_property
    def broker(self) -> Broker:
        """Service Bus in Azure; the durable SQLite broker under LOCAL_DIR on a workstation."""
        if self.settings.broker == "local":
            return LocalBroker(self.settings.local_dir / "broker.sqlite3")
        from shared.broker.servicebus import ServiceBusBroker  # azure-servicebus loads only where it is used

        return ServiceBusBroker.from_settings(self.settings)

    @cached_property
    def ledger(self) -> OpportunityLedger:
        return OpportunityLedger(self.storage, self.settings.customer_shards)

    @cached_property
    def planner(self) -> Planner:
        return Planner(self.settings, self.ledger, self.broker, self.approvals, self.contact_guard, self.rep_router)

    # --- contact policy: caps on customer contacts, rep Teams modes ----------------------------------------
    @cached_property
    def contact_policy(self) -> ContactPolicy:
        """The contact policy file, checked once per process (no file: no caps)."""
        return load_contact_policy(self.settings.contact_policy_file)

    @cached_property
    def contact_log(self) -> ContactLog:
        return ContactLog(self.storage, self.contact_policy, shards=self.settings.customer_shards)

    @cached_property
    def contact_guard(self) -> ContactGuard:
        rules = {rule.id: rule for rule in self.ruleset.rules}
        return ContactGuard(self.contact_policy, self.contact_log, rules.get)

    @cached_property
    def digests(self) -> DigestBook:
        return DigestBook(self.storage)

    @cached_property
    def rep_router(self) -> RepRouter:
        """Cards to reps: at once inside their working hours, or into their daily digest (contact policy)."""
        priorities = {rule.id: rule.priority for rule in self.ruleset.rules}
        return RepRouter(self.settings, self.contact_policy, self.digests, lambda rule: priorities.get(rule, 0))

    def _route_followup(self, message: ActionMessage, outgoing: OutgoingMessage) -> OutgoingMessage:
        return self.rep_router.route(None, message, outgoing, datetime.fromtimestamp(self.clock(), UTC))

    def prepare_message(self, message: ActionMessage) -> ActionMessage:
        """A digest that is due gets its card (built from the day's items) just before it is sent."""
        if message.kind == DIGEST_KIND and not message.content:
            return render_digest(message, self.digests, self.settings, self.contact_policy.reps.digest_size)
        return message

    # --- approvals -----------------------------------------------------------------------------------------
    @cached_property
    def approval_store(self) -> ApprovalStore:
        return ApprovalStore(self.storage)

    @cached_property
    def approvals(self) -> ApprovalFlow:
        """Held messages → approval records, request cards, decisions (GET|POST /api/approvals/{id})."""
        return ApprovalFlow(self.settings, self.approval_store, self.ledger, self.broker, self.customers,
                            renderer=lambda: self.ruleset.renderer)

    # --- dashboard -------------------------------------------------------------------------------------------
    @cached_property
    def dashboard(self) -> DashboardService:
        """Snapshot, work list and page of GET /api/dashboard."""
        from shared.dashboard.service import DashboardService  # Jinja page templates load only where used

        return DashboardService(self.settings, self.storage, self.ledger, self.approval_store, self.broker,
                                ruleset=lambda: self.ruleset, journey=lambda: self.journey)

    # --- delivery: token providers, senders, rate limits ---------------------------------------------------
    @cached_property
    def clock(self) -> Callable[[], float]:
        """Epoch seconds for rate limits, leases and schedules (tests install a controllable one)."""
        return time.time

    @cached_property
    def http_timeout(self) -> tuple[float, float]:
        """(connect, read) seconds for calls to Microsoft endpoints."""
        return DEFAULT_TIMEOUT

    @cached_property
    def http_session(self) -> requests.Session:
        """One pooled HTTP session for MSAL, Graph, the Bot Connector and webhooks (tests may set `verify`)."""
        return requests.Session()

    @cached_property
    def graph_tokens(self) -> TokenProvider:
        s = self.settings
        if s.graph_use_managed_identity:
            return ManagedIdentityTokens(resource=GRAPH_RESOURCE, client_id=s.graph_client_id,
                                         http_client=self.http_session)
        if not (s.graph_tenant_id and s.graph_client_id):
            raise ConfigError("app settings GRAPH_TENANT_ID and GRAPH_CLIENT_ID are required for live delivery")
        return ClientCredentialTokens(
            tenant_id=s.graph_tenant_id, client_id=s.graph_client_id, scope=GRAPH_SCOPE,
            authority_host=s.authority_host, client_secret=s.graph_client_secret,
            certificate_pem=s.graph_certificate_path, certificate_thumbprint=s.graph_certificate_thumbprint,
            http_client=self.http_session)

    @cached_property
    def bot_tokens(self) -> TokenProvider:
        s = self.settings
        if not (s.bot_tenant_id and s.bot_app_id):
            raise ConfigError("app settings BOT_TENANT_ID and BOT_APP_ID are required for Teams 1:1 messages")
        return ClientCredentialTokens(tenant_id=s.bot_tenant_id, client_id=s.bot_app_id, scope=BOT_SCOPE,
                                      authority_host=s.authority_host, client_secret=s.bot_app_secret,
                                      http_client=self.http_session)

    @cached_property
    def delivery_transports(self) -> dict[str, Transport]:
        s = self.settings
        if s.delivery_transport == "outbox":
            outbox = OutboxTransport(s.local_dir / "outbox", s.mail_sender)
            return {Channel.EMAIL: outbox, Channel.TEAMS: outbox}
        session, timeout = self.http_session, self.http_timeout
        graph = ApiClient("graph", self.graph_tokens, session, timeout)
        teams = TeamsTransport(
            bot=ApiClient("bot", _Lazy(lambda: self.bot_tokens), session, timeout), graph=graph,
            webhook=ApiClient("webhook", None, session, timeout),
            directory=DirectoryCache(self.storage.table(DELIVERIES)), settings=s)
        return {Channel.EMAIL: GraphMailTransport(graph, graph_base_url=s.graph_base_url, mailbox=s.mail_sender or "",
                                            settings=s),
                Channel.TEAMS: teams}

    @cached_property
    def dedupe(self) -> DedupeStore:
        return DedupeStore(self.storage.table(DELIVERIES), clock=lambda: datetime.fromtimestamp(self.clock(), UTC))

    @cached_property
    def suppressions(self) -> SuppressionStore:
        return SuppressionStore(self.storage)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        return RateLimiter(self.storage, clock=self.clock)

    def on_delivered(self, message: ActionMessage, outcome: Outcome) -> None:
        """A message reached its recipient: the opportunity it belongs to becomes `notified` (never backwards)."""
        firing_key = message.properties.get("firing_key")
        if outcome.status == DeliveryStatus.SENT and firing_key:
            self.ledger.mark_notified(message.customer_id, firing_key, datetime.fromtimestamp(self.clock(), UTC))

    @cached_property
    def delivery(self) -> DeliveryService:
        return DeliveryService(
            transports=self.delivery_transports, dedupe=self.dedupe, limiter=self.rate_limiter,
            broker=self.broker, suppressions=self.suppressions, customer_opted_out=self._customer_opted_out,
            audit=self.storage.table(DELIVERIES), on_delivered=self.on_delivered,
            max_attempts=self.settings.delivery_max_attempts, clock=self.clock, prepare=self.prepare_message,
            route_followup=self._route_followup)

    def _customer_opted_out(self, customer_id: str) -> bool:
        stored = self.customers.get(customer_id)
        return bool(stored and stored.customer.email_opt_out)


    # --- CRM webhooks and write-back -----------------------------------------------------------------------
    @cached_property
    def crm_intake(self) -> WebhookIntake:
        """Verifies CRM webhooks and publishes their events to crm-events."""
        from shared.crm.ingest import WebhookIntake

        return WebhookIntake(self.settings, self.broker)

    @cached_property
    def dataverse(self) -> DataverseClient | None:
        """Dataverse Web API client (record re-query, tasks); None when DATAVERSE_URL is not set."""
        if not self.settings.dataverse_url:
            return None
        from shared.crm.dataverse import DataverseClient, msal_token_provider
        from shared.crm.mapping import load_mapping

        s = self.settings
        token = msal_token_provider(s.graph_tenant_id or "", s.graph_client_id or "", s.graph_client_secret,
                                    s.authority_host, s.graph_use_managed_identity)
        return DataverseClient(s.dataverse_url, token, load_mapping(s.mappings_dir, "dataverse"))

    @property
    def record_fetchers(self) -> dict[str, RecordFetcher]:
        """The CRMs whose stripped change events can be re-read here (`shared.pipeline.changes.refetched_record`)."""
        return {"dataverse": self.dataverse.fetch_event_record} if self.dataverse is not None else {}

    @cached_property
    def task_writer(self) -> TaskWriter:
        """Where crm_task actions go: the local Tasks table, or Dataverse (CRM_TASK_TARGET)."""
        from shared.crm.tasks import DataverseTaskWriter, LocalTaskLedger

        if self.settings.crm_task_target == "dataverse" and self.dataverse is not None:
            return DataverseTaskWriter(self.dataverse)
        return LocalTaskLedger(self.storage)


class _Lazy(TokenProvider):
    """Builds the real provider on first use (a mail-only deployment never needs bot credentials)."""

    def __init__(self, build):
        self._build = build

    def token(self, *, force_refresh: bool = False) -> str:
        return self._build().token(force_refresh=force_refresh)


_container: Container | None = None


def get_container() -> Container:
    """The process-wide container, built on first use from the environment (fails fast on bad settings)."""
    global _container
    if _container is None:
        _container = Container(Settings.from_env())
    return _container


def set_container(container: Container | None) -> None:
    """Install a container (tests, the local host) or clear it."""
    global _container
    _container = container

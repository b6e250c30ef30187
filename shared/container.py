"""The composition root: builds settings, stores, broker and senders once per process.

Functions get it through `get_container()`; tests build their own with `Container(settings)` pointed at Azurite and
local adapters. Every component is created lazily on first use, so a function only pays for what it touches.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from shared.broker.local import LocalBroker
from shared.broker.port import Broker
from shared.customer_store import CustomerStore
from shared.ledger import OpportunityLedger
from shared.pipeline import Planner
from shared.rules import Evaluator, RuleSet, load_ruleset
from shared.settings import Settings
from shared.tables import TableAccess

if TYPE_CHECKING:  # CRM modules load only where they are used
    from shared.crm.dataverse import DataverseClient
    from shared.crm.ingest import WebhookIntake
    from shared.crm.tasks import TaskWriter


class Container:
    def __init__(self, settings: Settings):
        self.settings = settings

    # --- storage -------------------------------------------------------------------------------------------
    @cached_property
    def tables(self) -> TableAccess:
        return TableAccess(self.settings)

    @cached_property
    def customers(self) -> CustomerStore:
        return CustomerStore(self.tables, self.settings.customer_shards)

    # --- rules (issue 3) -----------------------------------------------------------------------------------
    @cached_property
    def ruleset(self) -> RuleSet:
        """Rules and templates, checked and compiled once per process (InvalidInput lists every problem)."""
        return load_ruleset(self.settings.rules_dir, self.settings.templates_dir,
                            default_locale=self.settings.default_locale)

    @cached_property
    def evaluator(self) -> Evaluator:
        return Evaluator(self.ruleset, self.settings)

    # --- pipeline: broker, ledger (issue 4) ----------------------------------------------------------------
    @cached_property
    def broker(self) -> Broker:
        """Service Bus in Azure; the durable SQLite broker under LOCAL_DIR on a workstation."""
        if self.settings.broker == "local":
            return LocalBroker(self.settings.local_dir / "broker.sqlite3")
        from shared.broker.servicebus import ServiceBusBroker  # azure-servicebus loads only where it is used

        return ServiceBusBroker.from_settings(self.settings)

    @cached_property
    def ledger(self) -> OpportunityLedger:
        return OpportunityLedger(self.tables, self.settings.customer_shards)

    @cached_property
    def planner(self) -> Planner:
        return Planner(self.settings, self.ledger, self.broker)

    # --- delivery: token providers, senders, rate limits (issue 5) -----------------------------------------

    # --- CRM webhooks and write-back (issue 6) -------------------------------------------------------------
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

    @cached_property
    def task_writer(self) -> TaskWriter:
        """Where crm_task actions go: the local Tasks table, or Dataverse (CRM_TASK_TARGET)."""
        from shared.crm.tasks import DataverseTaskWriter, LocalTaskLedger

        if self.settings.crm_task_target == "dataverse" and self.dataverse is not None:
            return DataverseTaskWriter(self.dataverse)
        return LocalTaskLedger(self.tables)


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

"""The composition root: builds settings, stores, broker and senders once per process.

Functions get it through `get_container()`; tests build their own with `Container(settings)` pointed at Azurite and
local adapters. Every component is created lazily on first use, so a function only pays for what it touches.
"""

from __future__ import annotations

from functools import cached_property

from shared.broker.local import LocalBroker
from shared.broker.port import Broker
from shared.customer_store import CustomerStore
from shared.settings import Settings
from shared.tables import TableAccess


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

    # --- pipeline: broker, ledger (issue 4) ----------------------------------------------------------------
    @cached_property
    def broker(self) -> Broker:
        """Service Bus in Azure; the durable SQLite broker under LOCAL_DIR on a workstation."""
        if self.settings.broker == "local":
            return LocalBroker(self.settings.local_dir / "broker.sqlite3")
        from shared.broker.servicebus import ServiceBusBroker  # azure-servicebus loads only where it is used

        return ServiceBusBroker.from_settings(self.settings)

    # --- delivery: token providers, senders, rate limits (issue 5) -----------------------------------------

    # --- CRM webhooks and write-back (issue 6) -------------------------------------------------------------


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

"""Table Storage access: one TableServiceClient per process, table clients by DESIGN name (with TABLE_PREFIX)."""

from __future__ import annotations

import contextlib
from functools import cached_property

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient

from shared.domain.names import TABLES
from shared.settings import Settings

# Azurite's well-known development account (public, documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_connection_string(port: int, host: str = "127.0.0.1") -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"TableEndpoint=http://{host}:{port}/{AZURITE_ACCOUNT};")


class TableAccess:
    """Hands out table clients. Uses the connection string when set, else the managed identity."""

    def __init__(self, settings: Settings, **client_options):
        """`client_options` go to the SDK client (e.g. `raw_response_hook` to count requests in benchmarks)."""
        self.settings = settings
        self.client_options = client_options
        self._clients: dict[str, TableClient] = {}

    @cached_property
    def service(self) -> TableServiceClient:
        if self.settings.tables_connection_string:
            return TableServiceClient.from_connection_string(self.settings.tables_connection_string,
                                                             **self.client_options)
        from azure.identity import DefaultAzureCredential

        return TableServiceClient(endpoint=self.settings.tables_account_url, credential=DefaultAzureCredential(),
                                  **self.client_options)

    def name(self, table: str) -> str:
        return f"{self.settings.table_prefix}{table}"

    def table(self, table: str) -> TableClient:
        client = self._clients.get(table)
        if client is None:
            client = self._clients[table] = self.service.get_table_client(self.name(table))
        return client

    def ensure_tables(self, tables: tuple[str, ...] = TABLES) -> None:
        """Create the app's tables if missing (idempotent; Bicep creates them in Azure)."""
        for table in tables:
            with contextlib.suppress(ResourceExistsError):
                self.service.create_table(self.name(table))

"""The Table Storage backend (azure-data-tables): one TableServiceClient per process, tables by DESIGN name (with
TABLE_PREFIX), and the one place Azure SDK exceptions become the project's errors (`translate`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any, NoReturn

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient

from shared.domain.errors import CrmflowError, InvalidInput, NotFound, PayloadTooLarge, TransientError
from shared.domain.names import TABLES
from shared.settings import Settings
from shared.storage.backend import (
    AlreadyExists,
    BatchFailed,
    EntityNotFound,
    ETagMismatch,
    Op,
    Operation,
    Storage,
    Table,
    check_transaction,
)
from shared.storage.wire import PartFailed, TableWire

# Azurite's well-known development account (public, documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

_TOO_LARGE_CODES = {"EntityTooLarge", "PropertyValueTooLarge", "RequestBodyTooLarge"}


def azurite_connection_string(port: int, host: str = "127.0.0.1") -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"TableEndpoint=http://{host}:{port}/{AZURITE_ACCOUNT};")


class TableAccess:
    """Hands out SDK table clients. Uses the connection string when set, else the managed identity."""

    def __init__(self, settings: Settings, **client_options):
        """`client_options` go to the SDK client (e.g. `raw_response_hook` to count requests in benchmarks)."""
        self.settings = settings
        self.client_options = client_options
        self._clients: dict[str, TableClient] = {}

    @cached_property
    def service(self) -> TableServiceClient:
        options = {**_transport_options(), **self.client_options}
        if self.settings.tables_connection_string:
            return TableServiceClient.from_connection_string(self.settings.tables_connection_string, **options)
        from azure.identity import DefaultAzureCredential

        return TableServiceClient(endpoint=self.settings.tables_account_url, credential=DefaultAzureCredential(),
                                  **options)

    def name(self, table: str) -> str:
        return f"{self.settings.table_prefix}{table}"

    def table(self, table: str) -> TableClient:
        client = self._clients.get(table)
        if client is None:
            client = self._clients[table] = self.service.get_table_client(self.name(table))
        return client

    def ensure_tables(self, tables: Sequence[str] = TABLES) -> None:
        """Create the app's tables if missing (idempotent; Bicep creates them in Azure)."""
        for table in tables:
            with contextlib.suppress(ResourceExistsError):
                self.service.create_table(self.name(table))


_PROXY_SETTINGS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def _transport_options() -> dict:
    """The SDK's `requests` transport reads the environment on every request while `use_env_settings` is on (~3 ms
    of CPU a request on a sweep, mostly proxy-bypass checks). With no proxy configured, the one setting it would
    find is a CA bundle, handed over once instead."""
    if any(name in os.environ or name.lower() in os.environ for name in _PROXY_SETTINGS):
        return {}
    options: dict = {"use_env_settings": False}
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        options["connection_verify"] = bundle
    return options


def reason(exc: AzureError) -> str:
    """`<error code>: <first line of the message>` (no entity content)."""
    code = getattr(exc, "error_code", None) or getattr(exc, "status_code", None)
    code = getattr(code, "value", code)
    message = str(getattr(exc, "message", None) or exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return f"{code}: {message}" if code else message


def translate(exc: AzureError, table: str) -> CrmflowError:
    """An Azure SDK exception as the project's error."""
    code = getattr(exc, "error_code", None) or ""
    code = str(getattr(code, "value", code))  # the SDK's error decoder may leave a TableErrorCode member
    if isinstance(exc, ResourceExistsError):
        code = code or "EntityAlreadyExists"
    status = getattr(exc, "status_code", None) or 0
    if isinstance(exc, ResourceModifiedError):
        status = 412
    elif isinstance(exc, ResourceNotFoundError):
        status = 404
    elif not isinstance(exc, HttpResponseError):
        status = 0  # no answer from the service (connection, timeout)
    return classify(status, code, reason(exc), table)


def classify(status: int, code: str, why: str, table: str) -> CrmflowError:
    """The project's error for a service answer (`status` 0: none came)."""
    where = f"{table} table"
    if code == "EntityAlreadyExists":
        return AlreadyExists(f"{where}: the entity exists")
    if status == 412 or code == "UpdateConditionNotSatisfied":
        return ETagMismatch(f"{where}: the entity changed since it was read")
    if status == 404 or code == "ResourceNotFound":
        return EntityNotFound(f"{where}: not found")
    if status == 0 or status >= 500 or status in (408, 429):
        return TransientError(f"{where}: {why}")
    if status == 413 or code in _TOO_LARGE_CODES:
        return PayloadTooLarge(f"{where}: {why}")
    return InvalidInput(f"{where} rejected the request: {why}")


class AzureTable(Table):
    """One table through azure-data-tables."""

    def __init__(self, access: TableAccess, name: str):
        self.access = access
        self.name = name
        self._wire: TableWire | None = None

    @property
    def client(self) -> TableClient:
        return self.access.table(self.name)

    def _fail(self, exc: AzureError) -> NoReturn:
        raise translate(exc, self.name) from None

    def get(self, partition: str, row: str, select: Sequence[str] | None = None) -> Mapping[str, Any] | None:
        try:
            return self.wire.get(partition, row, select)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            self._fail(exc)

    def insert(self, entity: Mapping[str, Any]) -> str:
        try:
            return self.wire.insert(entity)
        except AzureError as exc:
            self._fail(exc)

    def _write(self, op: Op, entity: Mapping[str, Any], etag: str | None = None) -> str:
        try:
            return self.wire.write(op, entity, etag)
        except AzureError as exc:
            self._fail(exc)

    def replace(self, entity: Mapping[str, Any], etag: str | None = None) -> str:
        return self._write(Op.REPLACE, entity, etag)

    def merge(self, entity: Mapping[str, Any], etag: str | None = None) -> str:
        return self._write(Op.MERGE, entity, etag)

    def upsert(self, entity: Mapping[str, Any], *, merge: bool = False) -> str:
        return self._write(Op.UPSERT_MERGE if merge else Op.UPSERT, entity)

    def delete(self, partition: str, row: str, etag: str | None = None) -> None:
        try:
            self.wire.delete(partition, row, etag)
        except ResourceNotFoundError:
            pass  # gone already (as the SDK's delete_entity: a missing entity is not an error)
        except AzureError as exc:
            self._fail(exc)

    @property
    def wire(self) -> TableWire:
        wire = self._wire
        if wire is None or wire.client is not self.client:
            wire = self._wire = TableWire(self.client)
        return wire

    def query(self, filter: str | None = None, parameters: Mapping[str, Any] | None = None, *,
              select: Sequence[str] | None = None, page_size: int = 1000) -> Iterator[Mapping[str, Any]]:
        for page in self.pages(filter, parameters, select=select, page_size=page_size):
            yield from page

    def pages(self, filter: str | None = None, parameters: Mapping[str, Any] | None = None, *,
              select: Sequence[str] | None = None, page_size: int = 1000) -> Iterator[list[Mapping[str, Any]]]:
        try:
            yield from self.wire.query(filter, parameters, select, page_size)
        except AzureError as exc:
            self._fail(exc)

    def submit(self, operations: Sequence[Operation]) -> None:
        check_transaction(operations)
        try:
            self.wire.submit(operations)
        except PartFailed as failed:
            raise BatchFailed(classify(failed.status, failed.code, f"{failed.code}: {failed.message[:200]}",
                                       self.name), failed.index) from None
        except AzureError as exc:
            raise BatchFailed(translate(exc, self.name)) from None


class TableStorage(Storage):
    """The app's tables in one storage account (Azurite locally)."""

    def __init__(self, access: TableAccess):
        self.access = access
        self._tables: dict[str, AzureTable] = {}

    @classmethod
    def from_settings(cls, settings: Settings, **client_options) -> TableStorage:
        return cls(TableAccess(settings, **client_options))

    def table(self, name: str) -> AzureTable:
        handle = self._tables.get(name)
        if handle is None:
            handle = self._tables[name] = AzureTable(self.access, name)
        return handle

    def ensure_tables(self, names: Sequence[str] | None = None) -> None:
        self.access.ensure_tables(tuple(names) if names else TABLES)

    def delete_table(self, name: str) -> None:
        try:
            self.access.service.delete_table(self.access.name(name))
        except AzureError as exc:
            if not isinstance(translate(exc, name), NotFound):
                raise translate(exc, name) from None

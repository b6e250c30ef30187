"""`crmflow import` into Azurite: progress, summary, idempotent re-import, failed transactions reported."""

from __future__ import annotations

import socket
from pathlib import Path

from azure.core.pipeline.transport import RequestsTransport

from shared.container import Container
from shared.customers.importer import import_customers
from shared.customers.store import CustomerStore
from shared.devtools.cli import main
from shared.storage.tables import TableAccess

ROOT = Path(__file__).parent.parent.parent
CSV = ROOT / "tests" / "fixtures" / "csv"


def test_cli_import_of_samples_is_idempotent(azurite, settings, monkeypatch, capsys):
    monkeypatch.setenv("TABLES_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.setenv("TABLE_PREFIX", settings.table_prefix)
    args = ["import", str(ROOT / "samples" / "customers.csv"), "--purchases", str(ROOT / "samples" / "purchases.csv")]
    assert main(args) == 0
    first = capsys.readouterr()
    assert "imported 260 customers" in first.out and "0 rows rejected" in first.out
    assert "importing" in first.err  # the progress bar
    assert main(args) == 0
    store = CustomerStore(_tables(settings), settings.customer_shards)
    customers = list(store.iter_all())
    assert len(customers) == 260
    assert sum(len(c.purchases) for c in customers) == 300


def test_cli_reports_bad_rows_with_line_and_column(azurite, settings, monkeypatch, capsys):
    monkeypatch.setenv("TABLES_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.setenv("TABLE_PREFIX", settings.table_prefix)
    assert main(["import", str(CSV / "sharepoint_cp932.csv")]) == 1
    out = capsys.readouterr()
    assert "imported 2 customers" in out.out and "1 rows rejected" in out.out
    assert "sharepoint_cp932.csv:4, column '誕生日'" in out.err


class OutageTransport(RequestsTransport):
    """A real HTTP transport, except that a transaction holding the row `poison` goes to a port nobody listens on
    (the storage endpoint unreachable for that request, as in an outage)."""

    def __init__(self, poison: str):
        super().__init__()
        self.poison = b'"RowKey":"' + poison.encode() + b'"'

    def send(self, request, **kwargs):
        if request.url.endswith("/$batch") and self.poison in (request.content or b""):
            request.url = f"http://127.0.0.1:{closed_port()}/devstoreaccount1/$batch"
        return super().send(request, **kwargs)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_failed_transaction_is_reported_and_leaves_no_partial_rows(container):
    outage = Container(container.settings)
    outage.tables = TableAccess(container.settings, transport=OutageTransport(poison="C-000014"), retry_total=0)
    report = import_customers(outage.customers, ROOT / "samples" / "customers.csv",
                              purchases_path=ROOT / "samples" / "purchases.csv")
    failed = {e.line for e in report.errors}
    assert report.rejected >= 1 and all("not stored" in e.reason for e in report.errors)
    assert 15 in failed  # C-000014 is on line 15
    stored = {c.id for c in container.customers.iter_all()}
    assert len(stored) == report.imported == 260 - report.rejected
    assert "C-000014" not in stored
    # Re-running after the outage completes the import.
    again = import_customers(container.customers, ROOT / "samples" / "customers.csv",
                             purchases_path=ROOT / "samples" / "purchases.csv")
    assert again.rejected == 0 and len(list(container.customers.iter_all())) == 260


def _tables(settings):
    from shared.storage.tables import TableStorage

    return TableStorage.from_settings(settings)


def test_cli_warns_about_addresses_and_keeps_the_rows(azurite, settings, monkeypatch, capsys):
    monkeypatch.setenv("TABLES_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.setenv("TABLE_PREFIX", settings.table_prefix)
    assert main(["import", str(CSV / "bad_addresses.csv")]) == 1  # the bad date rejects its row
    out = capsys.readouterr()
    assert "imported 4 customers" in out.out and "1 rows rejected, 3 warnings" in out.out
    assert "bad_addresses.csv:4, column 'Email': not a valid e-mail address" in out.err
    assert "bad_addresses.csv:6, column 'Birthday': not a date: '24th of November' (accepted: YYYY-MM-DD" in out.err
    store = CustomerStore(_tables(settings), settings.customer_shards)
    assert store.get("B-3").customer.email == "dan@@example"

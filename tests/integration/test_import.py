"""`crmflow import` into Azurite: progress, summary, idempotent re-import, failed transactions reported."""

from __future__ import annotations

from pathlib import Path

from azure.core.exceptions import HttpResponseError

from shared.customers.importer import import_customers
from shared.customers.store import CustomerStore
from shared.devtools.cli import main

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


class FailingTable:
    """The real table client, except that transactions containing `poison` fail like a service error."""

    def __init__(self, real, poison: str):
        self.real, self.poison = real, poison

    def submit_transaction(self, operations):
        if any(entity["RowKey"] == self.poison for _, entity, _ in operations):
            raise HttpResponseError(message="InternalError: simulated outage")
        return self.real.submit_transaction(operations)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_failed_transaction_is_reported_and_leaves_no_partial_rows(container):
    real = container.tables.table("Customers")
    container.tables._clients["Customers"] = FailingTable(real, poison="C-000014")
    report = import_customers(container.customers, ROOT / "samples" / "customers.csv",
                              purchases_path=ROOT / "samples" / "purchases.csv")
    failed = {e.line for e in report.errors}
    assert report.rejected >= 1 and all("not stored" in e.reason for e in report.errors)
    assert 15 in failed  # C-000014 is on line 15
    container.tables._clients["Customers"] = real
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

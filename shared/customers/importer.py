"""`crmflow import`: stream customers from a file into the customer store in batched, idempotent upserts."""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Protocol

from shared.customers.reader import RowError, iter_customers
from shared.customers.store import BATCH_LIMIT, CustomerStore
from shared.domain.model import Customer

# Enough rows to fill most partitions' 100-entity transactions before flushing.
FLUSH_ROWS = 6400


class Progress(Protocol):
    """What the import reports progress to (the CLI passes `shared.devtools.progress.Progress`)."""

    def advance(self, n: int = 1) -> None: ...

    def close(self) -> float: ...


@dataclass
class ImportReport:
    read: int = 0
    imported: int = 0
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)  # rows imported with a problem (a bad address)
    seconds: float = 0.0

    @property
    def rejected(self) -> int:
        return len(self.errors)


def import_customers(store: CustomerStore, path: Path, *, purchases_path: Path | None = None,
                     mapping_path: Path | None = None, encoding: str | None = None, today: date | None = None,
                     progress: Progress | None = None, batch_size: int = BATCH_LIMIT) -> ImportReport:
    """Upsert every good row of `path`; bad rows (and rows of failed transactions) are reported, never half-written."""
    report = ImportReport()
    pending: list[tuple[int, Customer]] = []

    def flush() -> None:
        lines = {customer.id: line for line, customer in pending}
        failures = store.upsert_many((customer for _, customer in pending), batch_size=batch_size)
        failed = 0
        for failure in failures:
            for customer_id in failure.customer_ids:
                report.errors.append(RowError(str(path), lines[customer_id], None,
                                              f"not stored: {failure.reason}"))
                failed += 1
        report.imported += len(pending) - failed
        pending.clear()

    for line, customer in iter_customers(path, mapping_path=mapping_path, purchases_path=purchases_path,
                                         encoding=encoding, errors=report.errors, today=today,
                                         warnings=report.warnings):
        pending.append((line, customer))
        report.read += 1
        if progress:
            progress.advance()
        if len(pending) >= FLUSH_ROWS:
            flush()
    if pending:
        flush()
    report.errors.sort(key=lambda e: (e.file, e.line))
    report.warnings.sort(key=lambda e: (e.file, e.line))
    if progress:
        report.seconds = progress.close()
    return report


def summarize(customers: Iterable[Customer]) -> dict[str, Counter]:
    """Counts per plan, owner and time zone (owners are employees; no customer personal data)."""
    summary = {"plan": Counter(), "owner": Counter(), "timezone": Counter()}
    for customer in customers:
        summary["plan"][customer.plan or "(none)"] += 1
        summary["owner"][(customer.owner.name or customer.owner.email) if customer.owner else "(none)"] += 1
        summary["timezone"][customer.timezone or "(default)"] += 1
    return summary


def display_width(text: str) -> int:
    """Terminal columns of a string (CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def format_summary(summary: dict[str, Counter], total: int) -> str:
    lines = [f"{total:,} customers in the store"]
    for title, counter in summary.items():
        lines.append(f"  per {title}:")
        width = max((display_width(k) for k in counter), default=0)
        lines += [f"    {key}{' ' * (width - display_width(key))}  {count:>7,}" for key, count in counter.most_common()]
    return "\n".join(lines)

"""Opt-outs: the `Suppressions` table, checked by the sender at send time (not only when a mail was planned).

Rows: PartitionKey `customer` + RowKey = the customer id (`readable_key`: what a signed unsubscribe link names), or
PartitionKey `email` + RowKey = the digest of the normalised address (`normalise_address`: no address is stored in
clear); unsubscribing adds both. Adding is
idempotent.
"""

from __future__ import annotations

from datetime import UTC, datetime

from shared.domain.names import SUPPRESSIONS
from shared.storage.backend import AlreadyExists, Storage, Table
from shared.storage.keys import email_digest, readable_key

__all__ = ["BY_CUSTOMER", "BY_EMAIL", "SuppressionStore", "email_digest"]

BY_CUSTOMER = "customer"
BY_EMAIL = "email"


class SuppressionStore:
    def __init__(self, storage: Storage):
        self.storage = storage

    @property
    def table(self) -> Table:
        return self.storage.table(SUPPRESSIONS)

    def add_customer(self, customer_id: str, source: str) -> bool:
        """Suppress all mail to a customer. True when newly added, False when it already was (idempotent)."""
        return self._add(BY_CUSTOMER, readable_key(customer_id), source)

    def add_email(self, address: str, source: str) -> bool:
        return self._add(BY_EMAIL, email_digest(address), source)

    def is_suppressed(self, *, customer_id: str | None = None, email: str | None = None) -> bool:
        keys = []
        if customer_id:
            keys.append((BY_CUSTOMER, readable_key(customer_id)))
        if email:
            keys.append((BY_EMAIL, email_digest(email)))
        return any(self.table.get(pk, rk, select=["source"]) is not None for pk, rk in keys)

    def _add(self, pk: str, rk: str, source: str) -> bool:
        try:
            self.table.insert({"PartitionKey": pk, "RowKey": rk, "source": source, "created_at": datetime.now(UTC)})
        except AlreadyExists:
            return False
        return True

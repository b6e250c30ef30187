"""Opt-outs: the `Suppressions` table, checked by the sender at send time (not only when a mail was planned).

Rows: PartitionKey `customer` + RowKey = customer id (what a signed unsubscribe link names), or PartitionKey
`email` + RowKey = sha256 of the lower-cased address (so no address is stored in clear). Adding is idempotent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError, ServiceRequestError
from azure.data.tables import TableClient

from shared.domain.errors import TransientError

BY_CUSTOMER = "customer"
BY_EMAIL = "email"


def email_digest(address: str) -> str:
    """Stable digest of an address (for suppression rows, audit rows and logs: never the address itself)."""
    return hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()


def _safe_row_key(value: str) -> str:
    # Customer ids come from CRMs; characters Table keys forbid get the digest treatment.
    if any(ch in value for ch in "/\\#?") or any(ord(ch) < 32 for ch in value) or len(value) > 200:
        return "h" + hashlib.sha256(value.encode("utf-8")).hexdigest()
    return value


@dataclass(frozen=True)
class Suppression:
    kind: str
    created_at: datetime
    source: str


class SuppressionStore:
    def __init__(self, client: TableClient):
        self.client = client

    def add_customer(self, customer_id: str, source: str) -> bool:
        """Suppress all mail to a customer. True when newly added, False when it already was (idempotent)."""
        return self._add(BY_CUSTOMER, _safe_row_key(customer_id), source)

    def add_email(self, address: str, source: str) -> bool:
        return self._add(BY_EMAIL, email_digest(address), source)

    def is_suppressed(self, *, customer_id: str | None = None, email: str | None = None) -> bool:
        keys = []
        if customer_id:
            keys.append((BY_CUSTOMER, _safe_row_key(customer_id)))
        if email:
            keys.append((BY_EMAIL, email_digest(email)))
        return any(self._exists(pk, rk) for pk, rk in keys)

    def _add(self, pk: str, rk: str, source: str) -> bool:
        try:
            self.client.create_entity({"PartitionKey": pk, "RowKey": rk, "source": source,
                                       "created_at": datetime.now(UTC)})
        except ResourceExistsError:
            return False
        except (HttpResponseError, ServiceRequestError) as exc:
            raise TransientError(f"Suppressions table: {type(exc).__name__}") from None
        return True

    def _exists(self, pk: str, rk: str) -> bool:
        try:
            self.client.get_entity(pk, rk, select=["source"])
        except ResourceNotFoundError:
            return False
        except (HttpResponseError, ServiceRequestError) as exc:
            raise TransientError(f"Suppressions table: {type(exc).__name__}") from None
        return True

"""Unsubscribe links: verify the signed token and record the opt-out.

GET shows a confirmation page whose button POSTs back; POST (the RFC 8058 one-click request
`List-Unsubscribe=One-Click` from the mail client, or the button) adds the suppression. GET alone does not
unsubscribe: mail security scanners fetch every link in a mail, and would otherwise unsubscribe customers who never
asked to. Adding is idempotent: a second POST answers the same page. The pages are `shared/web/unsubscribe.py`.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.delivery.suppressions import SuppressionStore
from shared.domain.signing import UNSUBSCRIBE, verify
from shared.settings import Settings


def customer_id_of(settings: Settings, token: str) -> str:
    """The customer a valid, unexpired link names; Unauthorized / InvalidInput otherwise."""
    return verify(settings, UNSUBSCRIBE, token)


def unsubscribe(settings: Settings, suppressions: SuppressionStore, token: str, source: str,
                address_of: Callable[[str], str | None] = lambda customer_id: None) -> str:
    """Record the opt-out of the customer the link names and of their address (`address_of(customer_id)`, stored as
    a digest), idempotently: the same address under another customer record (a duplicate contact, another CRM) is
    not mailed either. Returns the customer id."""
    customer_id = customer_id_of(settings, token)
    suppressions.add_customer(customer_id, source)
    address = address_of(customer_id)
    if address and "@" in address:
        suppressions.add_email(address, source)
    return customer_id

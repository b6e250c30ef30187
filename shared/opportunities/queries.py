"""The opportunities API's domain side: list with filters, and status updates people make (PATCH)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from shared.domain.errors import InvalidInput, Location
from shared.opportunities.ledger import Opportunity, OpportunityLedger, check_amount

FILTERS = ("status", "owner_email", "rule", "kind", "month", "customer_id")
MAX_LIMIT = 1000


@dataclass(frozen=True)
class StatusChange:
    status: str
    amount: float | None = None


def list_opportunities(ledger: OpportunityLedger, params: Mapping[str, str]) -> list[Opportunity]:
    """Filters from query parameters (`status`, `owner_email`, `rule`, `kind`, `month`, `customer_id`, `limit`)."""
    unknown = set(params) - {*FILTERS, "limit", "code"}  # `code` is the Functions key
    if unknown:
        raise InvalidInput(f"unknown query parameter(s) {sorted(unknown)}; filters are {', '.join(FILTERS)}, limit",
                           Location(field=sorted(unknown)[0]))
    try:
        limit = int(params.get("limit", "100"))
    except ValueError:
        raise InvalidInput("limit must be a whole number", Location(field="limit")) from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", Location(field="limit"))
    return ledger.query(**{name: params[name] for name in FILTERS if params.get(name)}, limit=limit)


def parse_status_change(body: bytes) -> StatusChange:
    """`{"status": "won", "amount": 480000}` → StatusChange; InvalidInput naming the bad field."""
    try:
        data = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInput("body must be JSON, e.g. {\"status\": \"won\", \"amount\": 480000}") from None
    if not isinstance(data, dict):
        raise InvalidInput("body must be a JSON object with a status")
    unknown = set(data) - {"status", "amount"}
    if unknown:
        raise InvalidInput(f"unknown field(s) {sorted(unknown)}", Location(field=sorted(unknown)[0]))
    status = data.get("status")
    if not isinstance(status, str):
        raise InvalidInput("is required (in_progress, won or lost)", Location(field="status"))
    amount = data.get("amount")
    check_amount(amount)
    return StatusChange(status, amount)


def change_status(ledger: OpportunityLedger, opportunity_id: str, body: bytes) -> Opportunity:
    change = parse_status_change(body)
    return ledger.set_status(opportunity_id, change.status, amount=change.amount, by="api")

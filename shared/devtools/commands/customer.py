"""crmflow customer <id> [--format text|json]: one stored customer, their journey stage and open opportunities.

Reads the Customers and Opportunities tables (the configured account, or the local Azurite). The customer's personal
data is printed to this terminal only: nothing of it is logged.
"""

from __future__ import annotations

import argparse
import json
import sys

from shared.customers.importer import display_width
from shared.devtools.commands._local import local_stack
from shared.domain.model import Customer
from shared.domain.vocabulary import OpportunityStatus
from shared.opportunities.ledger import Opportunity

# Opportunities that still wait for someone: the rep, an approver, or the delivery.
OPEN_STATUSES = (OpportunityStatus.DETECTED, OpportunityStatus.QUEUED, OpportunityStatus.NOTIFIED,
                 OpportunityStatus.IN_PROGRESS, OpportunityStatus.NEEDS_APPROVAL)


def register(subparsers) -> None:
    parser = subparsers.add_parser("customer", help="show a stored customer, journey stage and open opportunities",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("customer_id", metavar="ID", help="customer id (顧客ID), e.g. C-000001")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="text: a readable summary (default); json: the canonical customer and the rows")
    parser.set_defaults(func=run)


def open_opportunities(container, customer_id: str) -> list[Opportunity]:
    """The customer's opportunities nobody has closed yet, newest first."""
    found = container.ledger.query(customer_id=customer_id, limit=1000)
    return sorted((o for o in found if o.status in OPEN_STATUSES), key=lambda o: o.detected_at, reverse=True)


def run(args: argparse.Namespace) -> int:
    with local_stack(quiet=True) as container:
        stored = container.customers.get(args.customer_id)
        if stored is None:
            print(f"crmflow customer: no customer {args.customer_id!r} in the store", file=sys.stderr)
            return 1
        customer = stored.customer
        opportunities = open_opportunities(container, customer.id)
    if args.format == "json":
        print(json.dumps({"customer": customer.to_dict(), "journey": {"stage": customer.stage},
                          "open_opportunities": [o.to_dict() for o in opportunities]},
                         ensure_ascii=False, indent=2, default=str))
    else:
        print(format_customer(customer, opportunities))
    return 0


def format_customer(customer: Customer, opportunities: list[Opportunity]) -> str:
    """A readable summary: who, whose, what they bought and hold, where in the journey, what is open."""
    def person(p) -> str | None:
        return " ".join(part for part in (p.name, f"<{p.email}>" if p.email else None) if part) if p else None

    purchases = sorted(customer.purchases, key=lambda p: p.date.isoformat() if p.date else "")
    rows = [
        ("customer", f"{customer.id}  {customer.name or ''}".rstrip()),
        ("contact", " ".join(part for part in (customer.contact_name, f"<{customer.email}>" if customer.email
                                               else None) if part) or None),
        ("owner", person(customer.owner)), ("manager", person(customer.manager)),
        ("locale", " / ".join(part for part in (customer.locale, customer.timezone) if part) or None),
        ("plan", " ".join(part for part in (
            customer.plan, customer.contract_status and f"({customer.contract_status})",
            (customer.contract_start or customer.contract_end)
            and f"{customer.contract_start or '?'} → {customer.contract_end or '?'}") if part) or None),
        ("products", ", ".join(customer.products) or None),
        ("purchases", f"{len(purchases)}, last {purchases[-1].product} on {purchases[-1].date}" if purchases
         else None),
        ("annual spend", f"¥{customer.annual_spend:,.0f}" if customer.annual_spend is not None else None),
        ("birthday", customer.birthday and customer.birthday.isoformat()),
        ("journey stage", customer.stage or "(none)"),
        ("flags", ", ".join(flag for flag, on in (("email opt-out", customer.email_opt_out),
                                                  ("approval required", customer.requires_approval)) if on)
         or None),
        ("usage", ", ".join(f"{k} {v}" for k, v in customer.usage.items()) or None),
        ("custom", ", ".join(f"{k}: {v}" for k, v in customer.custom.items()) or None),
        ("CRM", customer.crm_url),
    ]
    width = max(display_width(label) for label, _ in rows)
    lines = [f"{label}{' ' * (width - display_width(label))}  {value}" for label, value in rows if value]
    lines.append(f"\nopen opportunities: {len(opportunities)}")
    for o in opportunities:
        lines.append(f"  {o.detected_at.date()}  {o.status:<14} {o.kind:<10} {o.rule}"
                     + (f"  — {o.recommendation}" if o.recommendation else ""))
    return "\n".join(lines)

"""Outcomes from the rep: the card's signed buttons (in progress / won with an optional amount / not now).

`GET|POST /api/opportunities/{id}/outcome?token=…` (anonymous at the Functions level: the signed token, purpose
`outcome`, bound to this opportunity id, is the credential). The GET shows a small page; only the POST records
the decision (a chat client prefetching the link changes nothing). The dashboard's outcome buttons record through
the same `record` (`via` dashboard). Recording is idempotent (the same decision again writes nothing), audited on
the ledger row (`decided_by`, `decided_at`, `decided_via`, `outcome_source: rep`) and an ETag compare-and-swap
(`OpportunityLedger.record_outcome`), so it never overwrites a delivery's or the CRM's concurrent update — and the
CRM's outcome, when its deal arrives, replaces the rep's (see `attribution.py`).
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from shared.domain.errors import InvalidInput, Location, Unauthorized
from shared.domain.signing import OUTCOME, verify
from shared.opportunities.ledger import IN_PROGRESS, LOST, REP, WON, Opportunity, OpportunityLedger, check_amount
from shared.settings import Settings

NOT_NOW = "not_now"
DECISIONS = {IN_PROGRESS: IN_PROGRESS, WON: WON, NOT_NOW: LOST}  # what the rep clicks → the status it records
MAX_BY = 200
LINK, DASHBOARD = "link", "dashboard"  # where a rep's decision was made (`decided_via`)


@dataclass(frozen=True)
class RepDecision:
    decision: str  # in_progress | won | not_now
    amount: float | None = None


def authorize(settings: Settings, ledger: OpportunityLedger, opportunity_id: str, token: str | None,
              now: datetime) -> Opportunity:
    """The opportunity a valid link names: Unauthorized (before any lookup) for a bad, forged or foreign token,
    NotFound for an unknown id."""
    if not token:
        raise Unauthorized("the link has no token")
    if verify(settings, OUTCOME, token, now) != opportunity_id:
        raise Unauthorized("the link is for another opportunity")
    return ledger.get(opportunity_id)


def parse_decision(decision: str | None, amount: object = None) -> RepDecision:
    """A form's or JSON body's `decision` and optional `amount` (text like "480,000" or a number)."""
    if decision not in DECISIONS:
        raise InvalidInput(f"decision must be one of {', '.join(DECISIONS)}", Location(field="decision"))
    value = _amount(amount)
    if value is not None and decision != WON:
        raise InvalidInput("an amount goes with won", Location(field="amount"))
    return RepDecision(decision, value)


def record(ledger: OpportunityLedger, opportunity_id: str, choice: RepDecision, now: datetime,
           by: str | None, via: str = LINK) -> Opportunity:
    """Record the rep's decision (idempotent); Conflict when the opportunity is closed by the CRM or never offered.

    The row keeps who decided (`by`), when, and where (`via`: the card's `link` or the `dashboard` page)."""
    return ledger.record_outcome(opportunity_id, DECISIONS[choice.decision], source=REP, now=now,
                                 amount=choice.amount, by=(by or "")[:MAX_BY] or None, decision=choice.decision,
                                 via=via)


def _amount(raw: object) -> float | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, str):
        text = unicodedata.normalize("NFKC", raw).replace(",", "").replace("¥", "").replace("円", "").strip()
        try:
            raw = float(text)
        except ValueError:
            raise InvalidInput("must be a number", Location(field="amount")) from None
        if not math.isfinite(raw):
            raise InvalidInput("must be a finite number ≥ 0", Location(field="amount"))
    check_amount(raw)
    return float(raw)  # type: ignore[arg-type]

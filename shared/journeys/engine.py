"""Moving a customer through the journey: a pure function of the customer (and its previous version).

The journey's state lives on the customer: `stage` (the canonical field) and `custom["journey"]`:
`{"cycle": n, "deal": <the cycle's deal id>, "since": iso, "seq": n, "done": [transition ids of this cycle],
"used": [deal ids of earlier cycles], "pending": [history entries not yet recorded everywhere]}`.

Triggers are conditions on the customer as it is now, not on the difference an event made: a transition fires
when its customer is in its `from` state and the condition holds (the cycle's deal has reached a stage, its date
has come, a followed deal exists that no earlier cycle used). So a missed sweep, a lost race or events that arrive
out of order still reach the same state, and several transitions due at once apply in order, one after another.
A journey never moves backwards: transitions go to later states (or start a new cycle), each at most once per
cycle, and an older event cannot un-reach a deal stage because the CRM merge keeps the newer value per field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import Any

from shared.crm.merge import VERSIONS_KEY
from shared.domain.model import Customer, Deal
from shared.journeys.model import Journey, Transition, Trigger, TriggerKind
from shared.rules.dedupe import firing_key
from shared.rules.expressions import as_date

META_KEY = "journey"
LOST = "lost"
_EMPTY: Mapping = MappingProxyType({})


@dataclass(frozen=True)
class Step:
    """One transition applied to one customer: what its history entry records."""

    seq: int
    cycle: int
    transition: str
    source: str | None
    target: str
    at: datetime
    cause: str
    due: date | None = None
    deal: str | None = None

    def to_entry(self) -> dict:
        return {"seq": self.seq, "cycle": self.cycle, "transition": self.transition, "from": self.source,
                "to": self.target, "at": self.at.isoformat(), "cause": self.cause,
                "due": self.due.isoformat() if self.due else None, "deal": self.deal}

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Step:
        return cls(seq=int(entry["seq"]), cycle=int(entry["cycle"]), transition=str(entry["transition"]),
                   source=entry.get("from"), target=str(entry["to"]), at=datetime.fromisoformat(entry["at"]),
                   cause=str(entry.get("cause") or ""), due=date.fromisoformat(entry["due"]) if entry.get("due")
                   else None, deal=entry.get("deal"))


def step_key(journey: Journey, step: Step, customer_id: str) -> str:
    """The firing key of a step: one per (customer, cycle, transition)."""
    return firing_key(journey.transition(step.transition).rule.id, customer_id, f"c{step.cycle}")


def journey_meta(customer: Customer) -> dict:
    """A copy of the customer's journey state (empty when it has none)."""
    meta = customer.custom.get(META_KEY) if customer.custom else None
    if not meta:
        return {}
    return dict(meta) if meta.__class__ is dict or isinstance(meta, Mapping) else {}


def has_pending(customer: Customer) -> bool:
    """Whether steps wait to be recorded and planned (cheap: the sweep asks it for every customer)."""
    meta = customer.custom.get(META_KEY) if customer.custom else None
    return bool(meta) and isinstance(meta, Mapping) and bool(meta.get("pending"))


def pending_steps(customer: Customer) -> list[Step]:
    return [Step.from_entry(entry) for entry in journey_meta(customer).get("pending") or ()]


class JourneyEngine:
    """Computes the transitions due for a customer. Build once per process."""

    def __init__(self, journey: Journey):
        self.journey = journey
        self.states = frozenset(journey.state_ids)
        self.deal_types = journey.deal_types
        self.max_steps = len(journey.transitions) + 1
        # Stages whose every way out concerns a deal: a customer without deals there cannot move (most customers
        # of a sweep), known without looking at a trigger.
        self._deal_only = frozenset(stage for stage, transitions in journey.outgoing.items()
                                    if all(_concerns_deal(t.trigger) for t in transitions))

    def advance(self, customer: Customer, *, now: datetime, local: date, prev: Customer | None = None,
                cause: str | None = None) -> tuple[Customer, list[Step]]:
        """The customer after every transition due now (in order) and the steps taken; unchanged when none.

        `cause` names the change event (`<source>:<event id>`); date transitions name their date field, and a
        deal transition found by the sweep says `sweep`. New steps are also appended to the `pending` list of the
        customer's journey state, which `JourneyRunner.complete` empties once they are recorded and planned.
        """
        outgoing = self.journey.outgoing
        stage = customer.stage if customer.stage in self.states else None
        if stage not in outgoing or (not customer.deals and stage in self._deal_only):
            return customer, []
        raw = customer.custom.get(META_KEY) if customer.custom else None
        meta = raw if raw.__class__ is dict else journey_meta(customer) if raw else _EMPTY  # read-only until copied
        copied = False
        steps: list[Step] = []
        current = customer
        for _ in range(self.max_steps):
            applied = None
            for transition in outgoing.get(stage, ()):
                if transition.id in (meta.get("done") or ()) and not transition.new_cycle:
                    continue
                found = self._due(transition, current, meta, local, prev)
                if found is None:
                    continue
                deal, due = found
                if not transition.rule.when.fn(current, local, prev):
                    continue
                applied = (transition, deal, due)
                break
            if applied is None:
                break
            if not copied:
                meta, copied = dict(meta), True
            transition, deal, due = applied
            starts = transition.new_cycle or stage is None
            if starts:
                used = list(meta.get("used") or ())
                if meta.get("deal") and meta["deal"] not in used:
                    used.append(meta["deal"])
                meta.update(cycle=int(meta.get("cycle") or 0) + 1, deal=deal.id if deal else None, done=[],
                            used=used)
            elif deal is not None and not meta.get("deal"):
                meta["deal"] = deal.id
            seq = int(meta.get("seq") or 0) + 1
            kind = transition.trigger.kind
            step = Step(seq=seq, cycle=int(meta.get("cycle") or 1), transition=transition.id, source=stage,
                        target=transition.target, at=now,
                        cause=transition.trigger.cause_field if kind is TriggerKind.DATE else (cause or "sweep"),
                        due=due, deal=deal.id if deal else meta.get("deal"))
            meta.update(seq=seq, since=now.isoformat(), stage=transition.target,
                        done=[*(meta.get("done") or ()), transition.id],
                        pending=[*(meta.get("pending") or ()), step.to_entry()])
            steps.append(step)
            stage = transition.target
            current = _with_stage(current, stage, meta, now)
        return current, steps

    # --- triggers ----------------------------------------------------------------------------------------------
    def _due(self, transition: Transition, customer: Customer, meta: Mapping, local: date,
             prev: Customer | None) -> tuple[Deal | None, date | None] | None:
        """(the deal it concerns, the date it was due) when the trigger holds, else None."""
        trigger = transition.trigger
        if trigger.kind is TriggerKind.DEAL_CREATED:
            deal = self._new_deal(customer, meta, trigger.types, None)
            return (deal, None) if deal is not None else None
        if trigger.kind is TriggerKind.DEAL_STAGE:
            if transition.new_cycle or customer.stage not in self.states:
                deal = self._new_deal(customer, meta, trigger.types or self.journey.deal_types, trigger.stages)
            else:
                deal = self._cycle_deal(customer, meta)
                if deal is None or deal.stage not in trigger.stages or (trigger.types and deal.type not in
                                                                         trigger.types):
                    deal = None
            return (deal, None) if deal is not None else None
        if trigger.deal_field:
            deal = self._cycle_deal(customer, meta)
            day = getattr(deal, trigger.deal_field) if deal is not None else None
        else:
            deal = None
            day = as_date(trigger.customer_date.fn(customer, local, prev))
        if day is None:
            return None
        due = day + timedelta(days=trigger.offset_days)
        return (deal, due) if due <= local else None

    def _new_deal(self, customer: Customer, meta: Mapping, types: frozenset[str],
                  stages: frozenset[str] | None) -> Deal | None:
        """The latest followed deal of these types that no cycle used yet (lost deals start nothing)."""
        used, current = meta.get("used") or (), meta.get("deal")
        for deal in reversed(customer.deals):
            if deal.type in types and deal.stage != LOST and (stages is None or deal.stage in stages) and \
                    deal.id != current and deal.id not in used:
                return deal
        return None

    def _cycle_deal(self, customer: Customer, meta: Mapping) -> Deal | None:
        """The deal the current cycle follows; for a stage set by hand or an import, the latest followed deal."""
        deal_id = meta.get("deal")
        if deal_id:
            return next((d for d in customer.deals if d.id == deal_id), None)
        used = meta.get("used")
        deal_types = self.deal_types
        for deal in reversed(customer.deals):
            if deal.type in deal_types and (not used or deal.id not in used):
                return deal
        return None


def _concerns_deal(trigger: Trigger) -> bool:
    return trigger.kind is TriggerKind.DEAL_CREATED or trigger.kind is TriggerKind.DEAL_STAGE or \
        bool(trigger.deal_field)


def _with_stage(customer: Customer, stage: str, meta: dict, now: datetime) -> Customer:
    custom = dict(customer.custom)
    versions = dict(custom.get(VERSIONS_KEY) or {})
    versions["stage"] = now.isoformat()  # an older CRM event must not put the stage back
    custom[VERSIONS_KEY] = versions
    custom[META_KEY] = meta
    return replace(customer, stage=stage, custom=custom)


def without_pending(customer: Customer, seqs: set[int]) -> Customer:
    """The customer with these pending steps taken off its journey state."""
    meta = journey_meta(customer)
    pending = [entry for entry in meta.get("pending") or () if int(entry.get("seq", -1)) not in seqs]
    if len(pending) == len(meta.get("pending") or ()):
        return customer
    meta["pending"] = pending
    return replace(customer, custom={**customer.custom, META_KEY: meta})

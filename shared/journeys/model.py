"""A journey: ordered states and the transitions between them, compiled from `journeys/*.yaml`.

Each transition carries a compiled `Rule` (kind `journey`) holding its guard and its entry actions, so planning a
transition is planning a rule firing: the same evaluator renders it and the same planner claims and publishes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from shared.rules.expressions import CompiledExpression
from shared.rules.model import Rule


class TriggerKind(StrEnum):
    DEAL_CREATED = "deal_created"  # a followed deal with `type` in a set appears
    DEAL_STAGE = "deal_stage"  # the cycle's deal (or, for `new_cycle`, another followed deal) reaches a stage
    DATE = "date"  # a date of the cycle's deal, or a customer date plus an offset, is reached


@dataclass(frozen=True)
class Trigger:
    kind: TriggerKind
    types: frozenset[str] = frozenset()  # deal types the trigger looks at (empty: the journey's followed types)
    stages: frozenset[str] = frozenset()  # deal_stage: stage values that count as reached
    deal_field: str | None = None  # date: onboarding_due | renewal_notice_date | closed_on of the cycle's deal
    customer_date: CompiledExpression | None = None  # date: a customer date expression
    offset_days: int = 0  # date: days after (negative: before) the date

    @property
    def cause_field(self) -> str:
        """What a date transition's history names as its cause."""
        if self.deal_field:
            return self.deal_field
        return self.customer_date.source if self.customer_date else self.kind.value


@dataclass(frozen=True)
class State:
    id: str
    sla_days: int | None = None
    line: int | None = None


@dataclass(frozen=True)
class Transition:
    id: str
    source: str | None  # `from`: None = the customer is not in the journey yet
    target: str
    trigger: Trigger
    rule: Rule  # guard (`when`) and entry actions, planned like any rule firing
    new_cycle: bool = False  # starts the journey's next cycle (e.g. a won renewal)
    line: int | None = None


@dataclass(frozen=True)
class Journey:
    id: str
    states: tuple[State, ...]
    transitions: tuple[Transition, ...]
    deal_types: frozenset[str]  # the deals the journey follows (a cycle belongs to one of them)
    file: str | None = None
    outgoing: dict[str | None, tuple[Transition, ...]] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        by_source: dict[str | None, list[Transition]] = {}
        for transition in self.transitions:
            by_source.setdefault(transition.source, []).append(transition)
        self.outgoing.update({source: tuple(items) for source, items in by_source.items()})

    @property
    def state_ids(self) -> tuple[str, ...]:
        return tuple(state.id for state in self.states)

    def state(self, state_id: str | None) -> State | None:
        return next((state for state in self.states if state.id == state_id), None)

    def transition(self, transition_id: str) -> Transition:
        for transition in self.transitions:
            if transition.id == transition_id:
                return transition
        raise KeyError(transition_id)

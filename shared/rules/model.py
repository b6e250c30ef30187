"""Compiled rules and what evaluating them produces: firings, each with its planned (rendered) actions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from shared.domain.messages import ActionMessage
from shared.domain.vocabulary import ActionStatus, Channel, ContactCategory, Importance, RuleKind, Trigger
from shared.rules.expressions import CompiledExpression

# Bound once: reading an enum member is a slow attribute lookup on Python 3.11, and these are read per action.
_SUPPRESSED, _HELD_OUT, _CAPPED = ActionStatus.SUPPRESSED, ActionStatus.HELD_OUT, ActionStatus.CAPPED


@dataclass(frozen=True)
class ActionSpec:
    """One `actions:` entry of a rule, checked at load time."""

    channel: Channel
    route: str  # owner | manager | channel:<name> | customer | task
    template: str | None
    importance: Importance
    approval: CompiledExpression | None
    after: int | None  # index of the action (in the same rule) this one waits for
    due_in_days: int | None
    subject: Callable[[str, Mapping[str, Any]], str] | None = None  # crm_task subject (locale, context) → text
    description: Callable[[str, Mapping[str, Any]], str] | None = None
    line: int | None = None


@dataclass(frozen=True)
class Windows:
    field: CompiledExpression
    days_before: tuple[int, ...]  # ascending


@dataclass(frozen=True)
class ConvertsOn:
    """A won deal for `product` within `within_days` of the firing answers the rule's opportunity."""

    product: str
    within_days: int = 90


@dataclass(frozen=True)
class Rule:
    id: str
    kind: RuleKind
    on: frozenset[Trigger]
    when: CompiledExpression
    actions: tuple[ActionSpec, ...]
    once: str | None = None  # ever | year | month | week | day
    once_per: CompiledExpression | None = None
    windows: Windows | None = None
    recommendation: Callable[[str, Mapping[str, Any]], str] | None = None
    reason: Callable[[str, Mapping[str, Any]], str] | None = None
    description: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)  # constants for templates (`params.product_name`)
    file: str | None = None
    line: int | None = None
    campaign: str | None = None  # campaign rules: the CRM campaign id their deals name (default the rule id)
    converts_on: ConvertsOn | None = None
    category: ContactCategory = ContactCategory.LIFECYCLE  # default by kind: DEFAULT_CATEGORY
    priority: int = 0  # when firings compete for a contact cap, the higher priority wins
    holdout: float = 0.0  # share of customers kept as a control group (0..0.5): recorded held_out, sent nothing


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    renderer: Any  # shared.rendering.engine.Renderer
    files: tuple[str, ...] = ()
    segments: Any = None  # shared.segments.rfm.Segments the rules' `rfm.*` use

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)


@dataclass(frozen=True)
class PlannedAction:
    """One action of a firing, rendered. `content` has the shape `shared.domain.messages.ActionMessage` documents."""

    dedupe_key: str
    channel: str
    to: str
    status: ActionStatus
    reason: str | None
    subject: str | None
    content: Mapping[str, Any] = field(default_factory=dict)
    importance: Importance = Importance.NORMAL
    after: str | None = None  # dedupe key of the action this one waits for
    due_date: date | None = None
    template: str | None = None
    deferred_to: date | None = None  # a capped contact moved to the first day with room (customer-local)

    @property
    def sendable(self) -> bool:
        """Whether a message goes out for this action (now, or on the day a contact cap deferred it to)."""
        return self.status not in (_SUPPRESSED, _HELD_OUT) and not (self.status == _CAPPED and self.deferred_to is None)

    def to_message(self, firing: Firing, planned_at: datetime, not_before: datetime | None = None,
                   followups: tuple[ActionMessage | str, ...] = ()) -> ActionMessage:
        """The queue message for this action; `followups` are the `after:` actions released once it is sent."""
        properties = {"status": self.status}
        if self.template:
            properties["template"] = self.template
        if self.due_date:
            properties["due_date"] = self.due_date.isoformat()
        return ActionMessage(
            dedupe_key=self.dedupe_key, channel=self.channel, rule=firing.rule_id, kind=firing.kind,
            customer_id=firing.customer_id, to=self.to, subject=self.subject, content=dict(self.content),
            planned_at=planned_at, not_before=not_before, after=self.after, importance=self.importance,
            properties=properties,
            followups=tuple(f if isinstance(f, str) else f.to_json() for f in followups))


@dataclass(frozen=True)
class Firing:
    """A rule that fired for one customer in one period (the unit the ledger claims once)."""

    rule_id: str
    kind: str
    customer_id: str
    owner_email: str | None
    dedupe_key: str
    recommendation: str | None
    local_date: date
    actions: tuple[PlannedAction, ...]
    reason: str | None = None
    window: int | None = None  # days_before of the window that fired (windows rules)
    campaign: str | None = None  # the campaign a campaign rule's opportunity belongs to
    arm: str | None = None  # rules with a holdout: treatment | control (shared/segments/holdout.py)

    def to_dry_run_dict(self) -> dict:
        """Exactly the DESIGN dry-run shape."""
        return {
            "rule": self.rule_id, "customer": self.customer_id, "dedupe_key": self.dedupe_key,
            "actions": [{"channel": a.channel, "to": a.to, "status": a.status, "reason": a.reason,
                         "subject": a.subject} for a in self.actions],
        }

    def to_messages(self, planned_at: datetime,
                    not_before: Callable[[PlannedAction], datetime | None] | None = None,
                    ) -> list[tuple[PlannedAction, ActionMessage]]:
        """Messages for every action that is not suppressed, `after:` actions nested as follow-ups.

        Top-level actions only: an action waiting for another travels inside that one's message (released by the
        sender once delivered). Check `action.status`: needs_approval messages go to the approval store, not to a
        queue. `not_before(action)` lets the pipeline schedule mails into business hours.
        """
        waiting: dict[str, list[PlannedAction]] = {}
        for action in self.actions:
            if action.after and action.sendable:
                waiting.setdefault(action.after, []).append(action)

        def build(action: PlannedAction) -> ActionMessage:
            followups = tuple(build(child) for child in waiting.get(action.dedupe_key, ()))
            return action.to_message(self, planned_at, not_before(action) if not_before else None, followups)

        return [(action, build(action)) for action in self.actions if action.sendable and not action.after]

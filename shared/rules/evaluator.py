"""Evaluate compiled rules against customers and plan each firing's actions (rendered, with dedupe keys).

The hot loop of a sweep: per customer one local-date lookup (cached per time zone for the sweep's instant) and one
compiled lambda call per rule. Only firing customers pay for planning and rendering.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from shared.domain.addresses import valid_address
from shared.domain.errors import InvalidInput
from shared.domain.model import Customer, Person
from shared.domain.signing import outcome_url, unsubscribe_url
from shared.domain.vocabulary import ActionStatus, Channel, Trigger
from shared.opportunities.ledger import opportunity_id
from shared.rendering.engine import TrustedUrl, one_line, template_context
from shared.rendering.subjects import SubjectRenderer, reads
from shared.rules.dedupe import action_key, active_window, firing_key, per_period, period_of, window_period
from shared.rules.expressions import as_date
from shared.rules.loader import _sample_context
from shared.rules.model import (
    ActionSpec,
    Firing,
    PlannedAction,
    Rule,
    RuleSet,
)
from shared.segments.holdout import CONTROL, arm_of
from shared.settings import Settings

log = logging.getLogger(__name__)

# Bound once: reading an enum member is a slow attribute lookup on Python 3.11, and these are read per action.
_PLANNED = ActionStatus.PLANNED
_SUPPRESSED = ActionStatus.SUPPRESSED
_NEEDS_APPROVAL = ActionStatus.NEEDS_APPROVAL
_HELD_OUT = ActionStatus.HELD_OUT
_EMAIL_CHANNEL = Channel.EMAIL
_TEAMS_CHANNEL = Channel.TEAMS
_CRM_TASK_CHANNEL = Channel.CRM_TASK

DEFAULT_DUE_DAYS = 7  # teams and crm_task actions without due_in_days
OUTCOME_KINDS = ("cross_sell", "upsell")  # opportunities a rep answers from the card (in progress / won / not now)
NO_SIGNING_KEY = "no unsubscribe link: UNSUBSCRIBE_SIGNING_KEY is not set (sending will refuse this mail)"

class Evaluator:
    """Evaluates a RuleSet. Build once per process (rules and templates are compiled in the RuleSet)."""

    def __init__(self, ruleset: RuleSet, settings: Settings, *, subjects_only: bool = False):
        """`subjects_only`: render of each action only its subject (a card's fallbackText, a mail's subject, a
        task's subject), as a preview prints; `content` stays empty, and a firing's reason and recommendation are
        made only when some subject reads them. Statuses, recipients, keys and action reasons are unchanged."""
        self.ruleset = ruleset
        self.settings = settings
        self.renderer = ruleset.renderer
        self._subjects = SubjectRenderer(self.renderer) if subjects_only else None
        self._render_action = self._render_subject if subjects_only else self._render
        # Per rule, the firing texts no rendered subject reads, so rendering only subjects need not make them.
        self._unread = _unread_by_rule(ruleset, self._subjects) if subjects_only else {}
        self._by_trigger = {t: tuple((r, r.when.fn) for r in ruleset.rules if t in r.on) for t in Trigger}
        self._default_zone = ZoneInfo(settings.default_timezone)
        self._dates: tuple[datetime | None, dict[str | None, date]] = (None, {})
        # Rules that raised on some customer's data (e.g. text where a number was expected): counted, not fatal.
        self.errors: Counter[str] = Counter()

    def local_date(self, timezone: str | None, now: datetime) -> date:
        """`now` as a calendar date in the customer's time zone (cached per zone for one instant)."""
        cached_now, dates = self._dates
        if cached_now is not now and cached_now != now:
            dates = {}
            self._dates = (now, dates)
        day = dates.get(timezone)
        if day is None:
            zone = ZoneInfo(timezone) if timezone else self._default_zone
            day = dates[timezone] = now.astimezone(zone).date()
        return day

    def evaluate(self, customer: Customer, *, now: datetime, trigger: str, prev: Customer | None = None,
                 today: date | None = None, skip: Callable[[str], bool] | None = None) -> list[Firing]:
        """The firings of every rule whose `on` contains `trigger`; `today` overrides the customer-local date.

        `skip(firing_key)` true leaves a firing out before it is planned and rendered (the sweep passes the keys
        the ledger already holds, so a daily re-match of a `once: ever` rule costs no rendering).
        """
        rules = self._by_trigger.get(trigger)
        if rules is None:
            raise InvalidInput(f"trigger must be one of {', '.join(Trigger)}, not {trigger!r}")
        if now.tzinfo is None:
            raise InvalidInput("now must be an aware instant (with a UTC offset)")
        local = today
        if local is None:
            # The sweep passes one instant for all its customers: the cached date of the zone, without a call.
            cached_now, dates = self._dates
            local = dates.get(customer.timezone) if cached_now is now else None
            if local is None:
                local = self.local_date(customer.timezone, now)
        firings: list[Firing] = []
        for rule, when in rules:
            try:
                if not when(customer, local, prev):
                    continue
                period, window = self._period(rule, customer, local, prev)
                if period is None:
                    continue
                key = firing_key(rule.id, customer.id, period)
                if skip is not None and skip(key):
                    continue
                firings.append(self._plan(rule, customer, local, prev, key, window, now))
            except Exception:  # one customer's odd data must not stop a sweep; counted and logged without PII
                self.errors[rule.id] += 1
                log.warning("rule %s failed on customer %s", rule.id, customer.id, exc_info=True)
        return firings

    def plan(self, rule: Rule, customer: Customer, *, now: datetime, key: str, prev: Customer | None = None,
             today: date | None = None) -> Firing:
        """One firing of `rule` under a key the caller chose, planned and rendered like any other.

        Journeys compile each transition into a rule and plan its entry actions here when the transition happens.
        """
        local = today or self.local_date(customer.timezone, now)
        return self._plan(rule, customer, local, prev, key, None, now)

    # --- period and dedupe key -------------------------------------------------------------------------------
    @staticmethod
    def _period(rule: Rule, customer: Customer, local: date, prev: Customer | None) -> tuple[str | None, int | None]:
        if rule.windows is not None:
            anchor = as_date(rule.windows.field.fn(customer, local, prev))
            if anchor is None:
                return None, None
            window = active_window((anchor - local).days, rule.windows.days_before)
            return (None, None) if window is None else (window_period(window, anchor), window)
        if rule.once_per is not None:
            return per_period(rule.once_per.fn(customer, local, prev)), None
        return period_of(rule.once, local), None

    # --- planning --------------------------------------------------------------------------------------------
    def _plan(self, rule: Rule, customer: Customer, local: date, prev: Customer | None, key: str,
              window: int | None, now: datetime) -> Firing:
        locale = self.renderer.locale_for(customer.locale)
        context = template_context(customer=customer, rule_id=rule.id, kind=rule.kind, locale=locale, today=local,
                                   reason=None, recommendation=None, window=window, params=rule.params)
        unread = self._unread.get(id(rule), ())  # rules of this ruleset (not journeys') by identity
        if rule.reason and "reason" not in unread:
            context["reason"] = rule.reason(locale, context)
        if rule.recommendation and "recommendation" not in unread:
            context["recommendation"] = rule.recommendation(locale, context)
        if rule.kind in OUTCOME_KINDS and self.settings.unsubscribe_signing_key and "outcome_url" not in unread \
                and any(spec.channel == "teams" for spec in rule.actions):
            context["outcome_url"] = TrustedUrl(outcome_url(
                self.settings, opportunity_id(customer.id, key, self.settings.customer_shards), now))
        arm = arm_of(rule.id, customer.id, rule.holdout) if rule.holdout else None
        actions: list[PlannedAction] = []
        for index, spec in enumerate(rule.actions):
            actions.append(self._action(rule, spec, action_key(key, index), customer, local, prev, locale,
                                        context, actions, now, held_out=arm == CONTROL))
        owner = customer.owner.email if customer.owner else None
        return _new(Firing, {
            "rule_id": rule.id, "kind": rule.kind, "customer_id": customer.id, "owner_email": owner,
            "dedupe_key": key, "recommendation": context["recommendation"], "local_date": local,
            "actions": tuple(actions), "reason": context["reason"], "window": window, "campaign": rule.campaign,
            "arm": arm})

    def _action(self, rule: Rule, spec: ActionSpec, key: str, customer: Customer, local: date,
                prev: Customer | None, locale: str, base: dict[str, Any], earlier: list[PlannedAction],
                now: datetime, held_out: bool = False) -> PlannedAction:
        to, status, note = self._recipient(spec, customer)
        waits_for = earlier[spec.after] if spec.after is not None else None
        if status == _PLANNED and waits_for is not None and waits_for.status == _SUPPRESSED:
            status, note = _SUPPRESSED, f"waits for the {waits_for.channel} action, which is suppressed"
        if held_out and status == _PLANNED:
            # The control group: what would have gone out is recorded, nothing is rendered or sent. What could
            # not have been sent anyway stays suppressed, in both groups alike.
            return _new(PlannedAction, {
                "dedupe_key": key, "channel": spec.channel, "to": to, "status": _HELD_OUT,
                "reason": f"control group of the rule's {rule.holdout * 100:g}% holdout: not sent", "subject": None,
                "content": {}, "importance": spec.importance, "after": None, "due_date": None,
                "template": spec.template, "deferred_to": None})
        if status == _PLANNED and spec.approval is not None and spec.approval.fn(customer, local, prev):
            status, note = _NEEDS_APPROVAL, f"approval required ({one_line(spec.approval.source)})"
        due_days = spec.due_in_days if spec.due_in_days is not None else \
            (None if spec.channel == _EMAIL_CHANNEL else DEFAULT_DUE_DAYS)
        due = local + (_DAYS.get(due_days) or timedelta(days=due_days)) if due_days is not None else None
        subject, content = None, {}
        if status != _SUPPRESSED:  # render only what may be sent (or previewed by an approver)
            if self._subjects is not None:
                # Only a subject is made, a string, and nothing keeps the context once it is: the firing's context
                # serves each action in turn, every key an action sets or a render adds set afresh (the same keys
                # and values as a copy, which would cost more than most subjects).
                context = base
                context["importance"], context["due_date"] = spec.importance, due
                context["email"] = {"subject": waits_for.subject, "to": waits_for.to} \
                    if waits_for is not None and waits_for.channel == _EMAIL_CHANNEL else None
                context["unsubscribe_url"] = None
            else:
                context = dict(base, importance=spec.importance, due_date=due)
                if waits_for is not None and waits_for.channel == _EMAIL_CHANNEL:
                    context["email"] = {"subject": waits_for.subject, "to": waits_for.to}
            subject, content, warning = self._render_action(rule, spec, customer, locale, context, now)
            if warning:
                note = f"{note}; {warning}" if note else warning
        return _new(PlannedAction, {
            "dedupe_key": key, "channel": spec.channel, "to": to, "status": status, "reason": note,
            "subject": subject, "content": content, "importance": spec.importance,
            "after": waits_for.dedupe_key if waits_for else None, "due_date": due, "template": spec.template,
            "deferred_to": None})

    @staticmethod
    def _recipient(spec: ActionSpec, customer: Customer) -> tuple[str, str, str | None]:
        """(to, status, reason): suppressed with a reason when the action cannot or must not reach anyone."""
        if spec.channel == _EMAIL_CHANNEL:
            address = customer.email or ""
            if customer.email_opt_out:
                return address, _SUPPRESSED, "customer opted out of email"
            if not address:
                return "", _SUPPRESSED, "customer has no email address"
            if not valid_address(address):
                return address, _SUPPRESSED, "invalid recipient address"
            return address, _PLANNED, None
        if spec.channel == _CRM_TASK_CHANNEL:
            owner = customer.owner.email if customer.owner else None
            return (owner if _valid_staff_address(owner) else "unassigned"), _PLANNED, None
        if spec.route.startswith("channel:"):
            return spec.route, _PLANNED, None
        person: Person | None = customer.owner if spec.route == "owner" else customer.manager
        address = person.email if person else None
        if not address:
            return "", _SUPPRESSED, f"{spec.route} has no email address"
        if not _valid_staff_address(address):
            return address, _SUPPRESSED, "invalid recipient address"
        return address, _PLANNED, None

    def _render(self, rule: Rule, spec: ActionSpec, customer: Customer, locale: str, context: dict,
                now: datetime) -> tuple[str | None, dict, str | None]:
        """(subject, content, warning) in the shape shared.domain.messages.ActionMessage documents per channel."""
        if spec.channel == _TEAMS_CHANNEL:
            card = self.renderer.card(spec.template, locale, context)
            summary = one_line(card.get("fallbackText") or rule.id)
            person = customer.owner if spec.route == "owner" else customer.manager if spec.route == "manager" \
                else None
            return summary, {"card": card, "summary": summary,
                             "aad_object_id": person.aad_object_id if person else None}, None
        if spec.channel == _EMAIL_CHANNEL:
            warning = self._add_unsubscribe_url(context, customer, now)
            mail = self.renderer.email(spec.template, locale, context)
            return mail.subject, {"html": mail.html, "text": mail.text, "locale": locale,
                                  "unsubscribe_url": context["unsubscribe_url"]}, warning
        subject = spec.subject(locale, context) if spec.subject else one_line(f"{rule.id}: {customer.name or ''}")
        if spec.description:
            description = spec.description(locale, context)
        else:
            description = "\n".join(part for part in (context["reason"], context["recommendation"]) if part)
        return subject, {"description": description,
                         "due": context["due_date"].isoformat() if context["due_date"] else None,
                         # Only a usable address: a bad one would make the CRM writer refuse the rep's task.
                         "regarding_email": customer.email if valid_address(customer.email) else None,
                         "owner_email": customer.owner.email if customer.owner else None}, None

    def _add_unsubscribe_url(self, context: dict, customer: Customer, now: datetime) -> str | None:
        """A mail's signed unsubscribe link into `context`; the warning when no signing key is set."""
        if not self.settings.unsubscribe_signing_key:
            return NO_SIGNING_KEY
        context["unsubscribe_url"] = unsubscribe_url(self.settings, customer.id, now)
        return None

    def _render_subject(self, rule: Rule, spec: ActionSpec, customer: Customer, locale: str, context: dict,
                        now: datetime) -> tuple[str | None, dict, str | None]:
        """(subject, {}, warning): the subject exactly as `_render` makes it, and nothing else rendered."""
        subjects = self._subjects
        if spec.channel == _TEAMS_CHANNEL:
            return one_line(subjects.card_summary(spec.template, locale, context) or rule.id), {}, None
        if spec.channel == _EMAIL_CHANNEL:
            if "unsubscribe_url" in self._unread.get(id(rule), ()):  # no subject shows the link: not signed
                warning = None if self.settings.unsubscribe_signing_key else NO_SIGNING_KEY
            else:
                warning = self._add_unsubscribe_url(context, customer, now)
            return subjects.email_subject(spec.template, locale, context), {}, warning
        return (spec.subject(locale, context) if spec.subject else one_line(f"{rule.id}: {customer.name or ''}"),
                {}, None)


# What a firing (or a mail action) adds to the template context besides the customer, at a cost (texts rendered,
# links signed); rendering only subjects skips those no subject reads.
_FIRING_TEXTS = frozenset({"reason", "recommendation", "outcome_url", "unsubscribe_url"})


_DAYS = {days: timedelta(days=days) for days in range(1, 366)}  # due dates: one addition, no timedelta made
_STAFF_ADDRESSES: dict[str | None, bool] = {}  # owners' and managers' addresses recur on most firings
_MAX_STAFF_ADDRESSES = 10_000


def _valid_staff_address(address: str | None) -> bool:
    valid = _STAFF_ADDRESSES.get(address)
    if valid is None:
        valid = valid_address(address)
        if len(_STAFF_ADDRESSES) < _MAX_STAFF_ADDRESSES:
            _STAFF_ADDRESSES[address] = valid
    return valid


def _new(cls: type, fields: dict[str, Any]) -> Any:
    """A frozen dataclass instance from ALL its fields, without the generated __init__ (an object.__setattr__ per
    field, most of the cost of planning an action). Only for Firing and PlannedAction, which have no
    __post_init__; a unit test holds the field names here to the classes'."""
    instance = object.__new__(cls)
    instance.__dict__.update(fields)
    return instance


def _unread_by_rule(ruleset: RuleSet, subjects: SubjectRenderer) -> dict[int, frozenset[str]]:
    sample = _sample_context(ruleset.renderer)
    unread: dict[int, frozenset[str]] = {}
    for rule in ruleset.rules:
        def context(locale: str, rule: Rule = rule) -> dict:
            return sample(locale, rule.params)

        read: set[str] = set()
        for spec in rule.actions:
            if spec.channel == _TEAMS_CHANNEL:
                found = subjects.card_reads(spec.template, context)
            elif spec.channel == _EMAIL_CHANNEL:
                found = subjects.email_reads(spec.template, context)
            elif spec.subject:
                found = set().union(*(reads(spec.subject, locale, context(locale))
                                      for locale in ruleset.renderer.locales))
            else:
                found = set()  # the default task subject: rule id and customer name
            if found is None:
                read = set(_FIRING_TEXTS)
                break
            read |= found
        unread[id(rule)] = _FIRING_TEXTS - read
    return unread

"""Load and check the journey definition (`journeys/*.yaml`), reporting every problem at once as
`file:line, rule '<transition>', field '<part>': reason`, like the rule loader (whose checks it reuses).

Format (one journey; the customer has one `stage`):

    id: customer-success
    follows: [subscription_new, subscription_renewal]   # deal types a cycle can belong to
    states:                                              # in order
      - {id: contract, sla_days: 14}
    transitions:
      - id: contract
        from: null                                       # not in the journey yet
        to: contract
        on: {deal_created: [subscription_new, subscription_renewal]}
        guard: "owner.email"                             # optional, the rule expression language
        actions: [...]                                   # exactly as in rules
      - {id: implementation, from: contract, to: implementation, on: {deal_stage: [won, delivered]}, ...}
      - {id: utilization, from: onboarding, to: utilization, on: {date: deal.onboarding_due}, ...}
      - {id: nudge, from: utilization, to: ..., on: {date: contract_end, offset_days: -90}, ...}
      - {id: renewed, from: renewal, to: utilization, new_cycle: true,
         on: {deal_stage: [won, delivered], type: [subscription_renewal]}, ...}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from shared.domain.vocabulary import RuleKind
from shared.journeys.model import Journey, State, Transition, Trigger, TriggerKind
from shared.rendering.engine import Renderer
from shared.rules.expressions import ANY, DATE, DATETIME, NULL, STR, compile_expression
from shared.rules.loader import RuleProblems, _Checker, _Loader, _Map, _RuleChecker, _sample_context, _shown
from shared.rules.model import Rule

JOURNEY_KEYS = ("id", "follows", "states", "transitions", "description")
STATE_KEYS = ("id", "sla_days", "description")
TRANSITION_KEYS = ("id", "from", "to", "on", "guard", "reason", "recommendation", "params", "description", "actions",
                   "new_cycle")
DEAL_DATES = ("onboarding_due", "renewal_notice_date", "closed_on")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
_ALWAYS = compile_expression("true", filename="<journey>")


def load_journey(journeys_dir: Path, renderer: Renderer, segments: Any = None) -> Journey | None:
    """The journey under journeys_dir (None when the directory is missing or empty). Raises RuleProblems.

    `segments`: the rules' RFM configuration (`RuleSet.segments`) guards read through `rfm.*`; None: the shipped one.
    """
    journeys_dir = Path(journeys_dir)
    if not journeys_dir.is_dir():
        return None
    checker = _Checker(renderer, _sample_context(renderer), segments)
    journeys: list[Journey] = []
    files = sorted(p for p in journeys_dir.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    for path in files:
        journey = _JourneyChecker(checker, path).check()
        if journey is not None:
            journeys.append(journey)
    if len(journeys) > 1:
        checker.problem(journeys[1].file or "", 1, None, None,
                        f"only one journey is supported (the customer has one stage); also {journeys[0].file}")
    if checker.problems:
        raise RuleProblems(checker.problems)
    return journeys[0] if journeys else None


class _JourneyChecker:
    def __init__(self, parent: _Checker, path: Path):
        self.parent, self.path, self.file = parent, path, _shown(path)

    def problem(self, mapping: _Map | None, key: str | None, message: str, rule: str | None = None) -> None:
        line = (mapping.lines.get(key, mapping.line) if key is not None else mapping.line) if mapping else None
        self.parent.problem(self.file, line, rule, key, message)

    def check(self) -> Journey | None:
        try:
            data = yaml.load(self.path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (a SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            self.parent.problem(self.file, mark.line + 1 if mark else None, None, None,
                                f"not valid YAML: {getattr(exc, 'problem', None) or exc}")
            return None
        except UnicodeDecodeError:
            self.parent.problem(self.file, None, None, None, "not UTF-8 text")
            return None
        if data is None:
            return None
        if not isinstance(data, _Map):
            self.parent.problem(self.file, 1, None, None,
                                "a journey file is a mapping with id, follows, states and transitions")
            return None
        before = len(self.parent.problems)
        for key, line in data.duplicates:
            self.parent.problem(self.file, line, None, key, "key appears twice")
        for key in data:
            if key not in JOURNEY_KEYS:
                self.problem(data, key, f"unknown key {key!r} (allowed: {', '.join(JOURNEY_KEYS)})")
        journey_id = data.get("id")
        if not isinstance(journey_id, str) or not _ID.fullmatch(journey_id):
            self.problem(data, "id" if "id" in data else None,
                         "id is required: letters, digits, - and _, at most 32 characters")
            journey_id = "journey"
        follows = self.names(data, "follows", required=True)
        states = self.states(data)
        state_ids = [s.id for s in states]
        transitions = self.transitions(data, journey_id, state_ids, follows)
        if len(self.parent.problems) > before:
            return None
        return Journey(id=journey_id, states=tuple(states), transitions=tuple(transitions),
                       deal_types=frozenset(follows), file=self.file)

    def names(self, mapping: _Map, key: str, required: bool = False) -> list[str]:
        value = mapping.get(key)
        if value is None and not required:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            self.problem(mapping, key if key in mapping else None, f"{key} must be a list of names")
            return []
        return list(value)

    def states(self, data: _Map) -> list[State]:
        raw = data.get("states")
        if not isinstance(raw, list) or not raw:
            self.problem(data, "states" if "states" in data else None, "states must be a non-empty list, in order")
            return []
        states: list[State] = []
        for item in raw:
            if isinstance(item, str):
                item = _Map({"id": item})
                item.line, item.lines, item.duplicates = data.lines.get("states", data.line), {}, []
            if not isinstance(item, _Map):
                self.problem(data, "states", "each state is a name or {id: ..., sla_days: ...}")
                continue
            for key in item:
                if key not in STATE_KEYS:
                    self.problem(item, key, f"unknown state key {key!r} (allowed: {', '.join(STATE_KEYS)})")
            state_id, sla = item.get("id"), item.get("sla_days")
            if not isinstance(state_id, str) or not _ID.fullmatch(state_id):
                self.problem(item, "id", "a state needs an id: letters, digits, - and _")
                continue
            if any(s.id == state_id for s in states):
                self.problem(item, "id", f"state {state_id!r} is listed twice")
            if sla is not None and (not isinstance(sla, int) or isinstance(sla, bool) or not 1 <= sla <= 3650):
                self.problem(item, "sla_days", "sla_days must be a whole number of days 1..3650")
                sla = None
            states.append(State(state_id, sla, item.line))
        return states

    def transitions(self, data: _Map, journey_id: str, states: list[str], follows: list[str]) -> list[Transition]:
        raw = data.get("transitions")
        if not isinstance(raw, list) or not raw:
            self.problem(data, "transitions" if "transitions" in data else None, "transitions must be a non-empty list")
            return []
        transitions: list[Transition] = []
        seen: set[str] = set()
        for item in raw:
            if not isinstance(item, _Map):
                self.problem(data, "transitions", "each transition is a mapping with id, from, to, on, actions")
                continue
            transition = self.transition(item, journey_id, states, follows, seen)
            if transition is not None:
                transitions.append(transition)
        return transitions

    def transition(self, item: _Map, journey_id: str, states: list[str], follows: list[str],
                   seen: set[str]) -> Transition | None:
        rule_checker = _RuleChecker(self.parent, self.file, item)
        tid = rule_checker.rule_id
        for key, line in item.duplicates:
            self.parent.problem(self.file, line, tid, key, "key appears twice")
            rule_checker.failed = True
        for key in item:
            if key not in TRANSITION_KEYS:
                rule_checker.fail(key, f"unknown transition key {key!r} (allowed: {', '.join(TRANSITION_KEYS)})")
        if not isinstance(tid, str) or not _ID.fullmatch(tid):
            rule_checker.fail("id" if "id" in item else None,
                              "id is required: letters, digits, - and _, at most 32 characters (part of keys)")
        elif tid in seen:
            rule_checker.fail("id", "duplicate transition id")
        else:
            seen.add(tid)
        if "from" not in item:
            rule_checker.fail(None, "from is required: a state, or null for customers not in the journey yet")
        source = item.get("from")
        if source is not None and source not in states:
            rule_checker.fail("from", f"unknown state {source!r} (states: {', '.join(states)})")
        target = item.get("to")
        if target not in states:
            rule_checker.fail("to" if "to" in item else None, f"to must be one of the states: {', '.join(states)}")
        elif source is not None and source in states and states.index(target) <= states.index(source) \
                and not item.get("new_cycle"):
            rule_checker.fail("to", "a transition moves forward (a later state), unless it starts a new_cycle")
        new_cycle = item.get("new_cycle", False)
        if not isinstance(new_cycle, bool):
            rule_checker.fail("new_cycle", "must be true or false")
        trigger = self.trigger(item, rule_checker, follows)
        guard = rule_checker.expression("guard", item["guard"]) if "guard" in item else _ALWAYS
        actions = rule_checker.actions() if "actions" in item else ()
        reason = rule_checker.text_template("reason", item.get("reason"))
        recommendation = rule_checker.text_template("recommendation", item.get("recommendation"))
        params = item.get("params", {})
        if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
            rule_checker.fail("params", "params must be a mapping of names to values (passed to templates)")
            params = {}
        rule_checker.check_texts(params)  # a misspelt {{ customer.nmae }} fails here, as in rules
        if rule_checker.failed or trigger is None:
            return None
        rule = Rule(id=f"{journey_id}-{tid}", kind=RuleKind.JOURNEY, on=frozenset(), when=guard, actions=actions,
                    once="ever", recommendation=recommendation, reason=reason,
                    description=item.get("description") if isinstance(item.get("description"), str) else None,
                    params=MappingProxyType(dict(params)), file=self.file, line=item.line)
        return Transition(id=tid, source=source, target=target, trigger=trigger, rule=rule, new_cycle=new_cycle,
                          line=item.line)

    def trigger(self, item: _Map, checker: _RuleChecker, follows: list[str]) -> Trigger | None:
        on = item.get("on")
        kinds = [k for k in TriggerKind if isinstance(on, _Map) and k.value in on]
        if not isinstance(on, _Map) or len(kinds) != 1:
            checker.fail("on" if "on" in item else None,
                         "on names exactly one trigger: {deal_created: [types]}, {deal_stage: [stages]} or "
                         "{date: deal.<field> | <customer date>, offset_days: N}")
            return None
        kind = kinds[0]
        allowed = {TriggerKind.DEAL_CREATED: {"deal_created"}, TriggerKind.DEAL_STAGE: {"deal_stage", "type"},
                   TriggerKind.DATE: {"date", "offset_days"}}[kind]
        for key in on:
            if key not in allowed:
                checker.fail(key, f"unknown key {key!r} for a {kind} trigger (allowed: {', '.join(sorted(allowed))})",
                             on)
        if kind is TriggerKind.DEAL_CREATED:
            types = self.names(on, "deal_created", required=True)
            unknown = [t for t in types if t not in follows]
            if unknown:
                checker.fail("deal_created", f"deal types {unknown} are not in the journey's follows", on)
            return Trigger(kind, types=frozenset(types)) if types and not unknown else None
        if kind is TriggerKind.DEAL_STAGE:
            stages = self.names(on, "deal_stage", required=True)
            types = self.names(on, "type")
            return Trigger(kind, types=frozenset(types), stages=frozenset(stages)) if stages else None
        source, offset = on.get("date"), on.get("offset_days", 0)
        if not isinstance(offset, int) or isinstance(offset, bool) or not -3650 <= offset <= 3650:
            checker.fail("offset_days", "offset_days must be a whole number of days -3650..3650", on)
            return None
        if not isinstance(source, str) or not source:
            checker.fail("date", "date names deal.<field> or a customer date expression", on)
            return None
        if source.startswith("deal."):
            field = source.removeprefix("deal.")
            if field not in DEAL_DATES:
                checker.fail("date", f"deal dates are {', '.join('deal.' + d for d in DEAL_DATES)}", on)
                return None
            return Trigger(kind, deal_field=field, offset_days=offset)
        expression = checker.expression("date", source, on)
        if expression is None:
            return None
        if expression.type not in (DATE, DATETIME, ANY, STR, NULL):
            checker.fail("date", f"date must be a date, {source!r} is a {expression.type}", on)
            return None
        return Trigger(kind, customer_date=expression, offset_days=offset)


"""Load and check YAML rule files. Every problem found is reported at once, each naming file:line, rule and part."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from jinja2.exceptions import SecurityError

from shared.domain.errors import InvalidInput, Location
from shared.domain.model import CUSTOMER_FIELDS, Person
from shared.domain.vocabulary import (
    DEFAULT_CATEGORY,
    Channel,
    ContactCategory,
    Importance,
    RuleKind,
    TemplateKind,
    Trigger,
)
from shared.rendering.engine import Renderer, TemplateProblems, template_context
from shared.rules.dedupe import ONCE_PERIODS
from shared.rules.expressions import (
    ANY,
    DATE,
    DATETIME,
    NULL,
    STR,
    CompiledExpression,
    ExpressionError,
    compile_expression,
)
from shared.rules.model import ActionSpec, ConvertsOn, Rule, RuleSet, Windows
from shared.segments.config import SegmentProblems, load_segments
from shared.segments.rfm import Segments

RULE_KEYS = ("id", "kind", "on", "when", "once", "windows", "recommendation", "reason", "actions", "description",
             "params", "enabled", "campaign", "converts_on", "holdout", "category", "priority")
CONVERTS_ON_KEYS = ("product", "within_days")
MAX_HOLDOUT_PERCENT = 50
_PERCENT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*")
ACTION_KEYS = ("teams", "email", "crm_task", "template", "importance", "approval", "after", "due_in_days")
TASK_KEYS = ("subject", "description", "due_in_days")
_RULE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_CHANNEL_NAME = re.compile(r"channel:[A-Za-z0-9_-]{1,64}")
_TEMPLATE_FORM = {Channel.TEAMS: TemplateKind.CARD, Channel.EMAIL: TemplateKind.EMAIL}
PERSON_FIELDS = frozenset(Person.__dataclass_fields__)


class RuleProblems(InvalidInput):
    """Several problems in the rule files; `problems` lists each with its location."""

    def __init__(self, problems: list[tuple[Location, str]]):
        self.problems = problems
        lines = [f"{where}: {message}" if str(where) else message for where, message in problems]
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"{count} in the rules:\n  " + "\n  ".join(lines))


# ---------------------------------------------------------------------------------------------------------------
# YAML with line numbers, no duplicate keys, and YAML 1.2 booleans (so `on:` stays the string "on").
# ---------------------------------------------------------------------------------------------------------------
class _Map(dict):
    line: int = 0
    lines: dict
    duplicates: list


class _Loader(yaml.SafeLoader):
    pass


_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    mapping = _Map()
    mapping.line, mapping.lines, mapping.duplicates = node.start_mark.line + 1, {}, []
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            mapping.duplicates.append((key, key_node.start_mark.line + 1))
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.lines[key] = key_node.start_mark.line + 1
    return mapping


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)


def read_yaml(text: str) -> Any:
    """Parse YAML as rule files are parsed: mappings know their lines (`.line`, `.lines[key]`, `.duplicates`),
    YAML 1.2 booleans. Raises yaml.YAMLError."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)


# ---------------------------------------------------------------------------------------------------------------
def load_ruleset(rules_dir: Path, templates_dir: Path, *, default_locale: str = "ja-JP",
                 segments: Segments | Path | None = None) -> RuleSet:
    """Every `*.yaml`/`*.yml` under rules_dir, checked and compiled. Raises RuleProblems (an InvalidInput).

    `segments`: the RFM configuration rules read through `rfm.*` (a Segments, the path of a segments.yaml, or
    None for the shipped defaults); a rule comparing `rfm.label` with a label it does not give is a problem.
    """
    if not isinstance(segments, Segments):
        try:
            segments = load_segments(segments)
        except SegmentProblems as exc:
            raise RuleProblems(exc.problems) from None
    rules_dir = Path(rules_dir)
    if not rules_dir.is_dir():
        raise InvalidInput("rules directory does not exist", Location(file=_shown(rules_dir)))
    try:
        renderer = Renderer(Path(templates_dir), default_locale)
    except TemplateProblems as exc:
        raise RuleProblems(exc.problems) from None
    except InvalidInput as exc:  # no such directory, no locale folders
        raise RuleProblems([(exc.location, exc.reason)]) from None
    sample = _sample_context(renderer)
    template_errors = renderer.check(sample)
    checker = _Checker(renderer, sample, segments)
    checker.problems.extend((Location(file=_shown(Path(templates_dir))), e) for e in template_errors)
    files = sorted(p for p in rules_dir.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    for path in files:
        checker.load_file(path)
    if checker.problems:
        raise RuleProblems(checker.problems)
    return RuleSet(tuple(checker.rules), renderer, tuple(_shown(p) for p in files), segments)


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)


class _Checker:
    def __init__(self, renderer: Renderer, sample: Callable[..., dict], segments: Segments | None = None):
        self.renderer, self.sample = renderer, sample
        self.segments = segments or load_segments(None)
        self.problems: list[tuple[Location, str]] = []
        self.rules: list[Rule] = []
        self.seen: dict[str, str] = {}

    def problem(self, file: str, line: int | None, rule: str | None, part: str | None, message: str) -> None:
        self.problems.append((Location(file, line, part, rule), message))

    def load_file(self, path: Path) -> None:
        file = _shown(path)
        try:
            data = read_yaml(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            self.problem(file, mark.line + 1 if mark else None, None, None,
                         f"not valid YAML: {getattr(exc, 'problem', None) or exc}")
            return
        except UnicodeDecodeError:
            self.problem(file, None, None, None, "not UTF-8 text")
            return
        if data is None:
            return
        if isinstance(data, Mapping) and set(data) == {"rules"}:
            data = data["rules"]
        if not isinstance(data, list):
            self.problem(file, 1, None, None, "a rule file is a YAML list of rules (- id: ...)")
            return
        for item in data:
            if not isinstance(item, _Map):
                self.problem(file, None, None, None, "each rule must be a mapping with id, kind, on, when, ...")
                continue
            rule = _RuleChecker(self, file, item).check()
            if rule is not None:
                self.rules.append(rule)


class _RuleChecker:
    def __init__(self, parent: _Checker, file: str, data: _Map):
        self.parent, self.file, self.data = parent, file, data
        self.rule_id = data.get("id") if isinstance(data.get("id"), str) else None
        self.failed = False
        self.texts: list[tuple[str, _Map | None, Callable]] = []  # checked once the rule's params are known

    def fail(self, key: str | None, message: str, mapping: _Map | None = None) -> None:
        mapping = self.data if mapping is None else mapping
        line = mapping.lines.get(key, mapping.line) if key is not None else mapping.line
        self.parent.problem(self.file, line, self.rule_id, key, message)
        self.failed = True

    def expression(self, key: str, source: Any, mapping: _Map | None = None) -> CompiledExpression | None:
        if isinstance(source, bool):  # `approval: true` in YAML
            source = "true" if source else "false"
        if not isinstance(source, str):
            self.fail(key, "must be an expression (text)", mapping)
            return None
        try:
            return compile_expression(source, filename=f"{self.file}:{self.rule_id}:{key}",
                                      segments=self.parent.segments)
        except ExpressionError as exc:
            self.fail(key, str(exc), mapping)
            return None
        except RecursionError:  # the depth check should make this unreachable; a load error all the same
            self.fail(key, "expression is nested too deeply", mapping)
            return None

    def text_template(self, key: str, source: Any, mapping: _Map | None = None) -> Callable | None:
        if source is None:
            return None
        if not isinstance(source, str | int | float):
            self.fail(key, "must be text", mapping)
            return None
        try:
            compiled = self.parent.renderer.compile_text(str(source))
        except Exception as exc:  # jinja2.TemplateSyntaxError and friends
            self.fail(key, f"template error: {exc}", mapping)
            return None
        self.texts.append((key, mapping, compiled))
        return compiled

    def check_texts(self, params: Mapping[str, Any]) -> None:
        """Render every templated field once per locale with a full sample customer, as templates are checked:
        a misspelt `{{ customer.nmae }}` fails here, when the rules load, not per customer in a sweep."""
        for key, mapping, compiled in self.texts:
            for locale in self.parent.renderer.locales:
                context = self.parent.sample(locale, params)
                try:
                    compiled(locale, context)
                except Exception as exc:  # jinja2.UndefinedError, TypeError from a filter, ...
                    self.fail(key, f"template error ({locale}): {_explain(exc)}", mapping)
                    break

    def check(self) -> Rule | None:
        data = self.data
        for key, line in data.duplicates:
            self.parent.problem(self.file, line, self.rule_id, key, "key appears twice")
            self.failed = True
        for key in data:
            if key not in RULE_KEYS:
                self.fail(key, f"unknown key {key!r} (allowed: {', '.join(RULE_KEYS)})")
        rule_id = data.get("id")
        if not isinstance(rule_id, str) or not _RULE_ID.fullmatch(rule_id):
            self.fail("id" if "id" in data else None,
                      "id is required: letters, digits, - and _, at most 64 characters (it is part of dedupe keys)")
        elif rule_id in self.parent.seen:
            self.fail("id", f"duplicate rule id (also in {self.parent.seen[rule_id]})")
        else:
            self.parent.seen[rule_id] = f"{self.file}:{data.lines.get('id', data.line)}"
        kind = data.get("kind")
        if kind not in tuple(RuleKind):
            self.fail("kind" if "kind" in data else None, f"kind must be one of {', '.join(RuleKind)}")
        on = data.get("on", None)
        triggers = [on] if isinstance(on, str) else on
        if not isinstance(triggers, list) or not triggers or not all(t in tuple(Trigger) for t in triggers):
            self.fail("on" if "on" in data else None, "on must be a list of sweep and/or change")
            triggers = []
        when = self.expression("when", data.get("when")) if "when" in data else None
        if "when" not in data:
            self.fail(None, "when is required (an expression)")
        once, once_per, windows = self.period()
        actions = self.actions()
        recommendation = self.text_template("recommendation", data.get("recommendation"))
        reason = self.text_template("reason", data.get("reason"))
        description = data.get("description")
        if description is not None and not isinstance(description, str):
            self.fail("description", "must be text")
        params = data.get("params", {})
        if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
            self.fail("params", "params must be a mapping of names to values (passed to templates as params)")
        enabled = data.get("enabled", True)
        if not isinstance(enabled, bool):
            self.fail("enabled", "must be true or false")
        category = data.get("category", DEFAULT_CATEGORY.get(kind))
        if "category" in data and category not in tuple(ContactCategory):
            self.fail("category", f"category must be one of {', '.join(ContactCategory)}")
        priority = data.get("priority", 0)
        if not isinstance(priority, int) or isinstance(priority, bool) or not -1000 <= priority <= 1000:
            self.fail("priority", "priority must be a whole number -1000..1000 (higher wins a contact cap)")
        holdout = self.holdout(data.get("holdout", 0))
        self.check_texts(params if isinstance(params, Mapping) else {})
        campaign, converts_on = self.outcomes(kind, rule_id)
        if self.failed or not enabled:
            return None
        return Rule(id=rule_id, kind=RuleKind(kind), on=frozenset(Trigger(t) for t in triggers), when=when,
                    actions=actions, once=once, once_per=once_per, windows=windows, recommendation=recommendation,
                    reason=reason, description=description, params=MappingProxyType(dict(params)), file=self.file,
                    line=data.line, campaign=campaign, converts_on=converts_on, holdout=holdout,
                    category=ContactCategory(category), priority=priority)

    def outcomes(self, kind: Any, rule_id: Any) -> tuple[str | None, ConvertsOn | None]:
        """`campaign` (campaign rules: the CRM campaign its deals name, default the rule id) and `converts_on`
        (the won deal that answers the rule's opportunities)."""
        data = self.data
        campaign = data.get("campaign")
        if campaign is not None:
            if kind != "campaign":
                self.fail("campaign", "campaign goes with kind: campaign (other rules use converts_on)")
            elif not isinstance(campaign, str | int) or isinstance(campaign, bool) or not str(campaign).strip() \
                    or len(str(campaign)) > 200:
                self.fail("campaign", "campaign must be the CRM campaign id (text)")
        if kind == "campaign":
            campaign = str(campaign).strip() if isinstance(campaign, str | int) and not isinstance(campaign, bool) \
                else rule_id if isinstance(rule_id, str) else None
        else:
            campaign = None
        converts_on = None
        raw = data.get("converts_on")
        if raw is not None:
            if not isinstance(raw, _Map) or "product" not in raw or set(raw) - set(CONVERTS_ON_KEYS):
                self.fail("converts_on", "converts_on must be {product: <product code>, within_days: 90}")
                return campaign, None
            product, days = raw.get("product"), raw.get("within_days", 90)
            if not isinstance(product, str | int) or isinstance(product, bool) or not str(product).strip():
                self.fail("product", "product must be a product code", raw)
            elif not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3650:
                self.fail("within_days", "within_days must be a whole number of days 1..3650", raw)
            else:
                converts_on = ConvertsOn(str(product).strip(), days)
        return campaign, converts_on

    def holdout(self, value: Any) -> float:
        """`holdout: 10%` → 0.10: the share of customers kept as a control group (0 to 50%)."""
        match = _PERCENT.fullmatch(value) if isinstance(value, str) else None
        if value == 0 and not isinstance(value, bool):
            return 0.0
        if not match or not 0 <= float(match[1]) <= MAX_HOLDOUT_PERCENT:
            self.fail("holdout", f"holdout must be a percentage 0%..{MAX_HOLDOUT_PERCENT}% such as 10%, "
                                 f"not {value!r}")
            return 0.0
        return float(match[1]) / 100

    def period(self) -> tuple[str | None, CompiledExpression | None, Windows | None]:
        data = self.data
        has_once, has_windows = "once" in data, "windows" in data
        if has_once == has_windows:
            self.fail("once" if has_once else None,
                      "say how often the rule may fire: once: ever|year|month|week|day|{per: <expression>} "
                      "or windows: {field: ..., days_before: [...]} (exactly one of them)")
            return None, None, None
        if has_once:
            once = data["once"]
            if isinstance(once, _Map):
                extra = set(once) - {"per"}
                if extra or "per" not in once:
                    self.fail("once", "once as a mapping must be {per: <expression>}")
                    return None, None, None
                return None, self.expression("once", once["per"]), None
            if once not in ONCE_PERIODS:
                self.fail("once", f"once must be one of {', '.join(ONCE_PERIODS)} or {{per: <expression>}}, "
                                  f"not {once!r}")
                return None, None, None
            return once, None, None
        windows = data["windows"]
        if not isinstance(windows, _Map) or set(windows) != {"field", "days_before"}:
            self.fail("windows", "windows must be {field: <date field>, days_before: [90, 30, 7]}")
            return None, None, None
        field = self.expression("windows", windows["field"], windows)
        if field is not None and field.type not in (DATE, DATETIME, ANY, STR, NULL):
            self.fail("windows", f"windows.field must be a date, {windows['field']!r} is a {field.type}", windows)
        days = windows["days_before"]
        if not isinstance(days, list) or not days or not all(
                isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 3650 for d in days) \
                or len(set(days)) != len(days):
            self.fail("days_before", "days_before must be a list of distinct whole days 0..3650, e.g. [90, 30, 7]",
                      windows)
            return None, None, None
        return None, None, (Windows(field, tuple(sorted(days))) if field else None)

    def actions(self) -> tuple[ActionSpec, ...]:
        raw = self.data.get("actions")
        if not isinstance(raw, list) or not raw:
            self.fail("actions" if "actions" in self.data else None, "actions must be a non-empty list")
            return ()
        specs: list[ActionSpec] = []
        channels: list[str] = []
        for index, item in enumerate(raw):
            if not isinstance(item, _Map):
                self.fail("actions", f"actions[{index}] must be a mapping such as {{teams: owner, template: ...}}")
                continue
            spec = self.action(item, channels)
            channels.append(spec.channel if spec else "?")
            if spec is not None:
                specs.append(spec)
        return tuple(specs)

    def action(self, item: _Map, earlier: list[str]) -> ActionSpec | None:
        for key, line in item.duplicates:
            self.parent.problem(self.file, line, self.rule_id, key, "key appears twice")
            self.failed = True
        for key in item:
            if key not in ACTION_KEYS:
                self.fail(key, f"unknown action key {key!r} (allowed: {', '.join(ACTION_KEYS)})", item)
        present = [c for c in Channel if c in item]
        if len(present) != 1:
            self.fail(None, f"an action names exactly one channel: {', '.join(Channel)}", item)
            return None
        channel = present[0]
        value = item[channel]
        route, subject, description, due = channel, None, None, item.get("due_in_days")
        if channel == Channel.TEAMS:
            if value not in ("owner", "manager") and not (isinstance(value, str) and _CHANNEL_NAME.fullmatch(value)):
                self.fail("teams", f"teams must be owner, manager or channel:<name>, not {value!r}", item)
            route = value
        elif channel == Channel.EMAIL:
            if value != "customer":
                self.fail("email", f"email must be customer, not {value!r}", item)
            route = "customer"
        else:
            route = "task"
            if isinstance(value, _Map):
                for key in value:
                    if key not in TASK_KEYS:
                        self.fail(key, f"unknown crm_task key {key!r} (allowed: {', '.join(TASK_KEYS)})", value)
                if not value.get("subject"):
                    self.fail("crm_task", "crm_task needs a subject", value)
                subject = self.text_template("subject", value.get("subject"), value)
                description = self.text_template("description", value.get("description"), value)
                due = value.get("due_in_days", due)
            elif value is not True:
                self.fail("crm_task", "crm_task must be {subject: ..., due_in_days: ...}", item)
        template = item.get("template")
        if channel in _TEMPLATE_FORM:
            form = _TEMPLATE_FORM[channel]
            if not isinstance(template, str):
                self.fail("template" if "template" in item else channel, f"a {channel} action needs a template",
                          item)
            elif not self.parent.renderer.has(template, form):
                known = ", ".join(sorted(self.parent.renderer.names[form])) or "none"
                self.fail("template", f"unknown {form} template {template!r} (known: {known})", item)
        elif template is not None:
            self.fail("template", "crm_task takes subject/description, not a template", item)
        importance = item.get("importance", "normal")
        if importance not in tuple(Importance):
            self.fail("importance", f"importance must be one of {', '.join(Importance)}", item)
        approval = self.expression("approval", item["approval"], item) if "approval" in item else None
        after = None
        if "after" in item:
            if item["after"] not in tuple(Channel):
                self.fail("after", f"after must name an earlier action's channel ({', '.join(Channel)})", item)
            elif item["after"] not in earlier:
                self.fail("after", f"after: {item['after']} needs an earlier {item['after']} action in this rule",
                          item)
            else:
                after = earlier.index(item["after"])
        if due is not None and (not isinstance(due, int) or isinstance(due, bool) or not 0 <= due <= 3650):
            self.fail("due_in_days", "due_in_days must be a whole number of days 0..3650", item)
        return ActionSpec(channel=channel, route=route, template=template if channel != Channel.CRM_TASK else None,
                          importance=Importance(importance), approval=approval, after=after,
                          due_in_days=due if isinstance(due, int) else None, subject=subject,
                          description=description, line=item.line)


# ---------------------------------------------------------------------------------------------------------------
class _AnyKeys(dict):
    """A sample `usage`/`custom` mapping that has every key: their keys are the CRM's, unknown at load time."""

    def __missing__(self, key: str) -> int:
        return 1


_ATTRIBUTE = re.compile(r"'([\w.]+) object' has no attribute '(\w+)'")


def _explain(exc: Exception) -> str:
    """Jinja's 'shared.domain.model.Customer object' has no attribute 'nmae' in a rule author's words."""
    message = str(getattr(exc, "message", None) or exc)
    if isinstance(exc, SecurityError):  # the sandbox refused: Python internals or a mutating call
        return f"not allowed in a template: {message}"
    match = _ATTRIBUTE.search(message)
    if not match:
        return message
    owner, attribute = match[1].rsplit(".", 1)[-1], match[2]
    if owner == "dict":
        return f"no key {attribute!r} there (a rule's own values are in params:)"
    fields = {"Customer": CUSTOMER_FIELDS, "Person": PERSON_FIELDS}.get(owner)
    if fields is None:
        return message
    close = difflib.get_close_matches(attribute, sorted(fields), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(fields))})"
    return f"{owner.lower()} has no field {attribute!r}{hint}"


def _sample_context(renderer: Renderer) -> Callable[..., dict]:
    """A full context (every optional field present) to render each template once at load time."""
    from shared.domain.model import Customer

    customer = Customer.from_dict({
        "id": "C-SAMPLE", "name": "Sample Co.", "contact_name": "Sample Person", "email": "person@example.com",
        "owner": {"name": "Owner", "email": "owner@example.com", "aad_object_id": "00000000-0000-0000-0000-0"},
        "manager": {"name": "Manager", "email": "manager@example.com"}, "locale": "ja-JP",
        "timezone": "Asia/Tokyo", "products": ["A"],
        "purchases": [{"product": "A", "date": "2025-01-01", "amount": 1000, "deal_id": "D-1"}],
        "plan": "Basic", "contract_start": "2025-01-01", "contract_end": "2026-01-01", "contract_status": "active",
        "birthday": "1980-01-01", "last_purchase_date": "2025-01-01", "annual_spend": 1000, "usage": {"x": 1},
        "stage": "onboarding", "deals": [{"id": "D-1", "stage": "won"}], "crm_url": "https://crm.example/r/1",
    })
    customer = replace(customer, usage=_AnyKeys(customer.usage), custom=_AnyKeys())
    today = date(2025, 6, 1)
    template_params = {"product_name": "A", "product": "A", "years": 1}

    def build(locale: str, params: Mapping[str, Any] | None = None) -> dict:
        return template_context(
            customer=customer, rule_id="sample", kind="cross_sell", locale=locale, today=today,
            reason="reason", recommendation="recommendation", importance="high", due_date=today, window=30,
            unsubscribe_url="https://app.example/api/unsubscribe?token=t",
            email={"subject": "subject", "to": customer.email},
            approval={"url": "https://app.example/api/approvals/x", "subject": "subject", "preview": "preview",
                      "channel": "email", "to": customer.email, "rule": "sample"},
            params=template_params if params is None else params,
            outcome_url="https://app.example/api/opportunities/p00~x/outcome?token=t")

    return build


"""Evaluating rules: local dates per time zone, dedupe keys and windows, planned actions and their statuses."""

import json
import textwrap
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from shared.domain.messages import ActionMessage
from shared.domain.model import Customer
from shared.rules import Evaluator, load_ruleset
from shared.rules.dedupe import MAX_ACTION_KEY, MAX_FIRING_KEY, active_window, firing_key, period_of
from shared.settings import APP_ROOT, Settings

FIXTURES = Path(__file__).parent.parent / "fixtures" / "rules"
TEMPLATES = APP_ROOT / "templates"
NOW = datetime(2025, 11, 22, 0, 30, tzinfo=UTC)  # 09:30 in Tokyo, still 21 Nov in New York


def settings(**env: str) -> Settings:
    return Settings.from_env({"TABLES_CONNECTION_STRING": "UseDevelopmentStorage=true", **env})


@pytest.fixture(scope="module")
def catalog():
    return load_ruleset(APP_ROOT / "rules", TEMPLATES)


@pytest.fixture(scope="module")
def customers() -> dict[str, Customer]:
    return {c["id"]: Customer.from_dict(c) for c in json.loads((FIXTURES / "customers.json").read_text())}


def evaluator_for(tmp_path: Path, rules: str, **env: str) -> Evaluator:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "r.yaml").write_text(textwrap.dedent(rules), encoding="utf-8")
    return Evaluator(load_ruleset(folder, TEMPLATES), settings(**env))


def by_rule(firings):
    return {f.rule_id: f for f in firings}


def test_catalog_on_the_design_customer(catalog, customers):
    evaluator = Evaluator(catalog, settings(UNSUBSCRIBE_SIGNING_KEY="k" * 32))
    fired = by_rule(evaluator.evaluate(customers["C-001"], now=NOW, trigger="sweep"))
    assert {"cross-sell-a-to-b", "cross-sell-ac-to-d", "upsell-basic-to-premium", "upsell-high-annual-spend",
            "birthday-mail", "renewal-reminder"} <= set(fired)
    cross = fired["cross-sell-a-to-b"]
    assert cross.dedupe_key == "cross-sell-a-to-b:C-001:ever" and cross.local_date == date(2025, 11, 22)
    teams, task = cross.actions
    assert (teams.channel, teams.to, teams.status, teams.importance) == ("teams", "hanako@contoso.com", "planned",
                                                                         "high")
    card = teams.content["card"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.5"
    assert teams.content["aad_object_id"] == "11111111-2222-3333-4444-555555555555"
    text = json.dumps(card, ensure_ascii=False)
    for part in ("株式会社サンプル", "製品Bのデモ案内、または資料送付", "2025年11月29日", "https://crm.example/records/C-001"):
        assert part in text
    assert task.subject == "【クロスセル機会】製品B提案 - 株式会社サンプル" and task.content["due"] == "2025-11-29"
    assert fired["birthday-mail"].dedupe_key == "birthday-mail:C-001:2025"
    assert fired["renewal-reminder"].dedupe_key == "renewal-reminder:C-001:w90-2026-02-15"  # 85 days: 90 window


def test_local_date_is_the_customers_own(catalog, customers):
    evaluator = Evaluator(catalog, settings())
    # Birthday 21 Nov in New York: at 00:30 UTC on 22 Nov it is still the 21st there.
    fired = by_rule(evaluator.evaluate(customers["C-002"], now=NOW, trigger="sweep"))
    assert fired["birthday-mail"].local_date == date(2025, 11, 21)
    # --today overrides every customer's local date.
    assert "birthday-mail" not in by_rule(evaluator.evaluate(customers["C-002"], now=NOW, trigger="sweep",
                                                             today=date(2025, 11, 22)))


def test_suppression_reasons_and_after(catalog, customers):
    evaluator = Evaluator(catalog, settings(UNSUBSCRIBE_SIGNING_KEY="k" * 32))
    email, fyi = by_rule(evaluator.evaluate(customers["C-002"], now=NOW, trigger="sweep"))["birthday-mail"].actions
    assert (email.status, email.reason, email.subject) == ("suppressed", "customer opted out of email", None)
    assert fyi.status == "suppressed" and "suppressed" in fyi.reason and fyi.after == email.dedupe_key

    for address, reason in ((None, "customer has no email address"), ("bad\r\n@x", "invalid recipient address")):
        customer = Customer(id="C-9", email=address, birthday=date(1980, 11, 22))
        email, fyi = by_rule(evaluator.evaluate(customer, now=NOW, trigger="sweep"))["birthday-mail"].actions
        assert (email.status, email.reason) == ("suppressed", reason)
        assert fyi.status == "suppressed" and fyi.to == ""  # no owner either


def test_approval_and_unsubscribe_link(catalog, customers):
    customer = customers["C-001"]
    approved = Customer(**{**customer.__dict__, "requires_approval": True})
    evaluator = Evaluator(catalog, settings(UNSUBSCRIBE_SIGNING_KEY="k" * 32,
                                            PUBLIC_BASE_URL="https://crmflow.example"))
    email, fyi = by_rule(evaluator.evaluate(approved, now=NOW, trigger="sweep"))["birthday-mail"].actions
    assert email.status == "needs_approval" and email.reason == "approval required (requires_approval)"
    assert email.subject == "山田 太郎 様、お誕生日おめでとうございます"
    link = email.content["unsubscribe_url"]
    assert link.startswith("https://crmflow.example/api/unsubscribe?token=")
    assert link in email.content["text"] and link.replace("&", "&amp;") in email.content["html"]
    assert fyi.status == "planned" and fyi.after == email.dedupe_key
    assert "山田 太郎 様、お誕生日おめでとうございます" in json.dumps(fyi.content["card"], ensure_ascii=False)

    without_key = Evaluator(catalog, settings())
    email, _ = by_rule(without_key.evaluate(customer, now=NOW, trigger="sweep"))["birthday-mail"].actions
    assert email.status == "planned" and email.content["unsubscribe_url"] is None
    assert "UNSUBSCRIBE_SIGNING_KEY" in email.reason and "/api/unsubscribe" not in email.content["text"]


def test_messages_carry_followups_and_dry_run_shape(catalog, customers):
    evaluator = Evaluator(catalog, settings(UNSUBSCRIBE_SIGNING_KEY="k" * 32))
    firing = by_rule(evaluator.evaluate(customers["C-001"], now=NOW, trigger="sweep"))["renewal-reminder"]
    pairs = firing.to_messages(NOW, not_before=lambda a: NOW if a.channel == "email" else None)
    assert len(pairs) == 1
    action, message = pairs[0]
    assert message.dedupe_key == action.dedupe_key == "renewal-reminder:C-001:w90-2026-02-15.a0"
    assert message.not_before == NOW and message.properties["status"] == "planned"
    followup = ActionMessage.from_json(message.followups[0])
    assert followup.channel == "teams" and followup.after == message.dedupe_key
    assert ActionMessage.from_json(message.to_json()) == message
    assert firing.to_dry_run_dict() == {
        "rule": "renewal-reminder", "customer": "C-001", "dedupe_key": "renewal-reminder:C-001:w90-2026-02-15",
        "actions": [{"channel": "email", "to": "taro@example.co.jp", "status": "planned", "reason": None,
                     "subject": message.subject},
                    {"channel": "teams", "to": "hanako@contoso.com", "status": "planned", "reason": None,
                     "subject": "【送信済み】株式会社サンプル 様へメールを送信しました"}]}


WINDOWS = """\
- id: renew
  kind: lifecycle
  on: [sweep]
  when: "contract_end"
  windows: {field: contract_end, days_before: [90, 30, 7]}
  actions: [{teams: owner, template: upsell}]
"""


@pytest.mark.parametrize(("days_left", "window"), [
    (91, None), (90, 90), (85, 90), (31, 90), (30, 30), (8, 30), (7, 7), (0, 7), (-1, None)])
def test_windows_fire_once_per_window_and_catch_up(tmp_path, days_left, window):
    evaluator = evaluator_for(tmp_path, WINDOWS)
    end = date(2026, 3, 1)
    customer = Customer(id="C-1", contract_end=end)
    fired = evaluator.evaluate(customer, now=NOW, trigger="sweep", today=date.fromordinal(end.toordinal() - days_left))
    assert [f.window for f in fired] == ([window] if window else [])
    if window:
        assert fired[0].dedupe_key == f"renew:C-1:w{window}-2026-03-01"
    assert active_window(days_left, (7, 30, 90)) == window


def test_once_periods_in_the_local_calendar():
    day = date(2026, 1, 1)  # ISO week 2026-W01
    assert [period_of(p, day) for p in ("ever", "year", "month", "week", "day")] == [
        "ever", "2026", "2026-01", "2026-W01", "2026-01-01"]
    assert period_of("week", date(2027, 1, 1)) == "2026-W53"


def test_once_per_expression_and_null(tmp_path):
    evaluator = evaluator_for(tmp_path, """\
        - id: per-term
          kind: upsell
          on: [sweep]
          when: "true"
          once: {per: contract_end}
          actions: [{teams: owner, template: upsell}]
        - id: per-text
          kind: upsell
          on: [sweep]
          when: "true"
          once: {per: "name"}
          actions: [{teams: owner, template: upsell}]
        """)
    customer = Customer(id="C-1", contract_end=date(2026, 2, 15), name="株式会社 サンプル")
    keys = [f.dedupe_key for f in evaluator.evaluate(customer, now=NOW, trigger="sweep")]
    assert keys[0] == "per-term:C-1:per-2026-02-15"
    assert keys[1].startswith("per-text:C-1:per-") and " " not in keys[1]  # non-plain values are hashed
    assert evaluator.evaluate(Customer(id="C-2"), now=NOW, trigger="sweep") == []  # null period: nothing fires


def test_keys_stay_within_service_bus_limits_and_are_deterministic():
    long_id = "C" * 200
    key = firing_key("rule-with-a-long-name", long_id, "2026-W01")
    assert len(key) == MAX_FIRING_KEY and key == firing_key("rule-with-a-long-name", long_id, "2026-W01")
    assert key != firing_key("rule-with-a-long-name", long_id, "2026-W02")
    assert not any(ch in key for ch in "/\\#?")


def test_long_customer_id_action_keys(tmp_path, customers):
    evaluator = evaluator_for(tmp_path, WINDOWS)
    customer = Customer(id="C" * 200, contract_end=date(2026, 1, 1))
    (firing,) = evaluator.evaluate(customer, now=NOW, trigger="sweep")
    assert all(len(a.dedupe_key) <= MAX_ACTION_KEY for a in firing.actions)


STAGE_CHANGE = """\
    - id: stage-onboarding
      kind: journey
      on: [change]
      when: "stage == 'onboarding' and prev.stage != 'onboarding'"
      once: {per: "contract_start"}
      actions:
        - teams: owner
          template: journey_task
        - crm_task: {subject: "onboarding - {{ customer.name }}", due_in_days: 7}
    """


def test_change_rules_see_prev(tmp_path):
    evaluator = evaluator_for(tmp_path, STAGE_CHANGE)
    now = datetime(2026, 1, 5, tzinfo=UTC)
    current = Customer(id="C-1", stage="onboarding", contract_start=date(2026, 1, 1),
                       owner=Customer.from_dict({"id": "x", "owner": {"email": "rep@contoso.com"}}).owner)
    fired = by_rule(evaluator.evaluate(current, now=now, trigger="change", prev=Customer(id="C-1", stage="contract")))
    assert fired["stage-onboarding"].dedupe_key == "stage-onboarding:C-1:per-2026-01-01"
    task = fired["stage-onboarding"].actions[1]
    assert task.channel == "crm_task" and task.content["due"] == "2026-01-12"
    assert "stage-onboarding" not in by_rule(evaluator.evaluate(current, now=now, trigger="change", prev=current))


def test_bad_data_in_one_rule_is_counted_not_fatal(tmp_path):
    evaluator = evaluator_for(tmp_path, """\
        - id: odd
          kind: alert
          on: [sweep]
          when: "custom.score > 3"
          once: day
          actions: [{teams: owner, template: upsell}]
        """)
    odd = Customer(id="C-1", custom={"score": "high"})  # text where a number was expected
    assert evaluator.evaluate(odd, now=NOW, trigger="sweep") == []
    assert evaluator.errors["odd"] == 1
    with pytest.raises(Exception, match="trigger"):
        evaluator.evaluate(odd, now=NOW, trigger="nightly")


def test_crm_task_for_a_customer_with_a_bad_address_still_reaches_the_writer(catalog, customers):
    from dataclasses import replace

    from shared.crm.tasks import CrmTask

    customer = replace(customers["C-001"], email="not-an-email")
    fired = by_rule(Evaluator(catalog, settings()).evaluate(customer, now=NOW, trigger="sweep"))
    task = next(a for a in fired["cross-sell-a-to-b"].actions if a.channel == "crm_task")
    assert task.status == "planned" and task.content["regarding_email"] is None
    message = task.to_message(fired["cross-sell-a-to-b"], NOW)
    assert CrmTask.from_message(message).owner_email == "hanako@contoso.com"


def test_skip_leaves_out_known_firings_before_they_are_planned(catalog, customers):
    evaluator = Evaluator(catalog, settings(UNSUBSCRIBE_SIGNING_KEY="k" * 32))
    everything = evaluator.evaluate(customers["C-001"], now=NOW, trigger="sweep")
    asked: list[str] = []
    known = {everything[0].dedupe_key}

    def skip(key: str) -> bool:
        asked.append(key)
        return key in known

    rest = evaluator.evaluate(customers["C-001"], now=NOW, trigger="sweep", skip=skip)
    assert asked == [f.dedupe_key for f in everything]
    assert [f.dedupe_key for f in rest] == [f.dedupe_key for f in everything[1:]]

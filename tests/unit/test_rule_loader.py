"""Rule files: the default catalog loads; every problem is reported at once with file:line, rule id and part."""

import textwrap
from pathlib import Path

import pytest

from shared.rules import RuleProblems, load_ruleset
from shared.settings import APP_ROOT

TEMPLATES = APP_ROOT / "templates"
GOOD = """\
- id: ok
  kind: cross_sell
  on: [sweep, change]
  when: "'A' in products"
  once: ever
  actions:
    - teams: owner
      template: cross_sell
"""


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return folder


def problems(folder: Path, templates: Path = TEMPLATES) -> list[str]:
    with pytest.raises(RuleProblems) as caught:
        load_ruleset(folder, templates)
    return [f"{where}: {message}" for where, message in caught.value.problems]


def card_templates(tmp_path: Path, text: str, locales=("ja-JP", "en-US"), name: str = "cross_sell") -> Path:
    templates = tmp_path / "templates"
    for locale in locales:
        (templates / locale).mkdir(parents=True, exist_ok=True)
        (templates / locale / f"{name}.card.json").write_text(text, encoding="utf-8")
    return templates


def test_default_catalog_covers_every_scenario():
    ruleset = load_ruleset(APP_ROOT / "rules", TEMPLATES)
    ids = {rule.id for rule in ruleset.rules}
    assert {"cross-sell-a-to-b", "cross-sell-ac-to-d", "cross-sell-service-x-option-y", "upsell-basic-to-premium",
            "upsell-standard-heavy-reports", "upsell-high-annual-spend", "birthday-mail", "purchase-anniversary-a",
            "renewal-reminder", "campaign-subdisplay-40s-pc"} <= ids
    assert not any(rule.kind == "journey" for rule in ruleset.rules)  # the stages move in journeys/
    renewal = ruleset.rule("renewal-reminder")
    assert renewal.windows.days_before == (7, 30, 90) and renewal.on == frozenset({"sweep"})
    assert [a.channel for a in renewal.actions] == ["email", "teams"] and renewal.actions[1].after == 0


def test_yaml_on_key_is_not_a_boolean(tmp_path):
    ruleset = load_ruleset(write(tmp_path, GOOD), TEMPLATES)
    assert ruleset.rules[0].on == frozenset({"sweep", "change"})


def test_every_problem_is_reported_with_file_line_rule_and_part(tmp_path):
    folder = write(tmp_path, """\
        - id: first
          kind: cross_sell
          on: [sweep]
          when: "'A' in products and plann == 'Basic'"
          once: sometimes
          colour: blue
          actions:
            - teams: owner
              template: no_such_template
            - email: owner
              template: birthday
            - fax: owner
        - id: first
          kind: upsell
          on: [nightly]
          when: "__import__('os')"
          windows: {field: contract_end, days_before: [90, -1]}
          actions:
            - teams: channel:sales
              template: upsell
              after: email
        - id: second
          kind: lifecycle
          on: [sweep]
          when: "contract_end"
          once: ever
          windows: {field: contract_end, days_before: [30]}
          actions: []
        """)
    found = "\n".join(problems(folder))
    expected = [
        "rules.yaml:4, rule 'first', field 'when': unknown field 'plann'; did you mean 'plan'?",
        "rules.yaml:5, rule 'first', field 'once': once must be one of ever, year, month, week, day",
        "rules.yaml:6, rule 'first', field 'colour': unknown key 'colour'",
        "rules.yaml:9, rule 'first', field 'template': unknown card template 'no_such_template'",
        "rules.yaml:10, rule 'first', field 'email': email must be customer, not 'owner'",
        "rules.yaml:12, rule 'first': an action names exactly one channel",
        "rules.yaml:13, rule 'first', field 'id': duplicate rule id (also in ",
        "rules.yaml:15, rule 'first', field 'on': on must be a list of sweep and/or change",
        "rules.yaml:16, rule 'first', field 'when': names starting with '_' are reserved",
        "rules.yaml:17, rule 'first', field 'days_before': days_before must be a list of distinct whole days",
        "rules.yaml:21, rule 'first', field 'after': after: email needs an earlier email action in this rule",
        "rules.yaml:26, rule 'second', field 'once': say how often the rule may fire",
        "rules.yaml:28, rule 'second', field 'actions': actions must be a non-empty list",
    ]
    for line in expected:
        assert line in found
    assert "fax" in found


def test_duplicate_ids_across_files_and_duplicate_keys(tmp_path):
    folder = write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD.replace("once: ever", "once: ever\n  once: year"), "b.yaml")
    found = "\n".join(problems(folder))
    assert "b.yaml:1, rule 'ok', field 'id': duplicate rule id (also in " in found and "a.yaml:1" in found
    assert "b.yaml:6, rule 'ok', field 'once': key appears twice" in found


def test_bad_yaml_and_bad_shape(tmp_path):
    folder = write(tmp_path, "- id: [unclosed\n", "broken.yaml")
    write(tmp_path, "id: not-a-list\n", "shape.yaml")
    found = "\n".join(problems(folder))
    assert "broken.yaml:2: not valid YAML" in found
    assert "shape.yaml:1: a rule file is a YAML list of rules" in found


def test_windows_field_must_be_a_date_and_per_expression_is_checked(tmp_path):
    folder = write(tmp_path, """\
        - id: w
          kind: lifecycle
          on: [sweep]
          when: "true"
          windows: {field: annual_spend, days_before: [30]}
          actions: [{teams: owner, template: upsell}]
        - id: p
          kind: upsell
          on: [sweep]
          when: "true"
          once: {per: "contract_end.__class__"}
          actions: [{teams: owner, template: upsell}]
        """)
    found = "\n".join(problems(folder))
    assert "rule 'w', field 'windows': windows.field must be a date, 'annual_spend' is a number" in found
    assert "rule 'p', field 'once': attributes starting with '_' are not allowed" in found


def test_template_bugs_are_load_errors(tmp_path):
    card = '{"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "{{ custmer.name }}"}]}'
    templates = card_templates(tmp_path, card)
    card_templates(tmp_path, '{"type": "AdaptiveCard", "version": "1.5"}', locales=("ja-JP",), name="only_ja")
    found = "\n".join(problems(write(tmp_path, GOOD), templates))
    assert "card template 'only_ja' is missing for locale en-US" in found


def test_misspelt_template_variable_is_caught_when_checked(tmp_path):
    card = '{"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "{{ custmer.name }}"}]}'
    found = "\n".join(problems(write(tmp_path, GOOD), card_templates(tmp_path, card)))
    assert "ja-JP/cross_sell.card.json: 'custmer' is undefined" in found


def test_disabled_rules_are_checked_but_not_loaded(tmp_path):
    ruleset = load_ruleset(write(tmp_path, GOOD + "  enabled: false\n"), TEMPLATES)
    assert ruleset.rules == ()


def test_templated_rule_fields_are_checked_against_the_customer_schema(tmp_path):
    folder = write(tmp_path, """\
        - id: typo
          kind: cross_sell
          on: [sweep]
          when: "'A' in products"
          once: ever
          reason: "{{ customer.nmae }} owns A"
          recommendation: "call {{ owner.emial }}"
          actions:
            - teams: owner
              template: cross_sell
            - crm_task:
                subject: "{{ customer.name }} / {{ params.missing }}"
                description: "{{ customer.usage.reports }} reports, {{ customer.custom.anything }}"
        """)
    found = sorted(problems(folder), key=lambda text: int(text.split(":")[1].split(",")[0]))
    assert len(found) == 3, found
    assert found[0].endswith(":6, rule 'typo', field 'reason': template error (en-US): customer has no field 'nmae' "
                             "(did you mean 'name'?)")
    assert ":7, rule 'typo', field 'recommendation': template error (en-US): person has no field 'emial'" in found[1]
    assert ":12, rule 'typo', field 'subject': template error (en-US):" in found[2] and "no key 'missing'" in found[2]


def test_rule_params_are_available_to_its_templated_fields(tmp_path):
    folder = write(tmp_path, GOOD + '  params: {product: "B"}\n  reason: "lacks {{ params.product }}"\n')
    [rule] = load_ruleset(folder, TEMPLATES).rules
    assert rule.reason("ja-JP", {"params": rule.params}) == "lacks B"
def test_outcome_keys_campaign_and_converts_on(tmp_path):
    campaign = GOOD.replace("id: ok", "id: spring").replace("kind: cross_sell", "kind: campaign")
    folder = write(tmp_path, GOOD.replace("once: ever", "once: ever\n  converts_on: {product: B, within_days: 30}")
                   + campaign + campaign.replace("id: spring", "id: named").replace(
                       "once: ever", "once: ever\n  campaign: CMP-7"))
    rules = {rule.id: rule for rule in load_ruleset(folder, TEMPLATES).rules}
    assert (rules["ok"].converts_on.product, rules["ok"].converts_on.within_days, rules["ok"].campaign) == \
        ("B", 30, None)
    assert rules["spring"].campaign == "spring" and rules["named"].campaign == "CMP-7"
    # The shipped campaign rule names its CRM campaign.
    assert load_ruleset(APP_ROOT / "rules", TEMPLATES).rule("campaign-subdisplay-40s-pc").campaign


def test_bad_outcome_keys_are_load_errors_with_lines(tmp_path):
    folder = write(tmp_path, GOOD.replace("once: ever", "once: ever\n  campaign: CMP-1")
                   + GOOD.replace("id: ok", "id: two").replace("once: ever", "once: ever\n  converts_on: B")
                   + GOOD.replace("id: ok", "id: three").replace(
                       "once: ever", "once: ever\n  converts_on:\n    product: B\n    within_days: -3")
                   + GOOD.replace("id: ok", "id: four").replace(
                       "once: ever", "once: ever\n  converts_on: {product: B, within: 3}"))
    found = "\n".join(problems(folder))
    assert "rules.yaml:6, rule 'ok', field 'campaign': campaign goes with kind: campaign" in found
    assert "rules.yaml:15, rule 'two', field 'converts_on': converts_on must be {product" in found
    assert "rules.yaml:26, rule 'three', field 'within_days': within_days must be a whole number" in found
    assert "rule 'four', field 'converts_on'" in found




def test_expressions_that_would_hang_or_crash_the_loader_are_load_errors(tmp_path):
    negations = "-" * 1000 + "annual_spend > 0"
    nested = "abs(" * 150 + "annual_spend" + ")" * 150 + " > 0"
    folder = write(tmp_path, f"""\
        - id: hang
          kind: upsell
          on: [sweep]
          when: "round(annual_spend, -999999999999999) > 0"
          once: ever
          actions:
            - teams: owner
              template: upsell
        - id: crash
          kind: upsell
          on: [sweep]
          when: "{negations}"
          once: ever
          actions:
            - teams: owner
              template: upsell
        - id: deep
          kind: upsell
          on: [sweep]
          when: "{nested}"
          once: ever
          actions:
            - teams: owner
              template: upsell
        """)
    found = "\n".join(problems(folder))
    assert "rules.yaml:4, rule 'hang', field 'when': round() takes at most 15 digits" in found
    assert "rules.yaml:12, rule 'crash', field 'when': expression is nested more than" in found
    assert "rule 'deep', field 'when': expression is nested more than" in found


def test_round_with_a_digit_count_from_data_is_null_not_a_hang():
    from shared.rules.expressions import compile_expression

    expression = compile_expression("round(annual_spend, usage.digits)")
    assert expression.fn(type("C", (), {"annual_spend": 5, "usage": {"digits": -10**15}})(), None, None) is None

"""`holdout: N%` on a rule: checked at load, and the control group's firings are held out, not sent."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.domain.model import Customer
from shared.rules import Evaluator, RuleProblems, load_ruleset
from shared.segments.holdout import CONTROL, TREATMENT, arm_of
from shared.settings import APP_ROOT, Settings

TEMPLATES = APP_ROOT / "templates"
NOW = datetime(2026, 11, 24, tzinfo=UTC)
RULE = """\
- id: cross-sell-holdout
  kind: cross_sell
  on: [sweep]
  when: "'A' in products"
  once: ever
  holdout: {holdout}
  actions:
    - email: customer
      template: campaign
    - teams: owner
      template: email_sent
      after: email
    - crm_task: {{subject: "follow up"}}
"""


def ruleset(tmp_path: Path, holdout: str):
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "r.yaml").write_text(textwrap.dedent(RULE.format(holdout=holdout)), encoding="utf-8")
    return load_ruleset(folder, TEMPLATES)


def test_holdout_is_a_percentage_up_to_half(tmp_path):
    assert ruleset(tmp_path, "10%").rules[0].holdout == 0.10
    assert ruleset(tmp_path, "'12.5 %'").rules[0].holdout == 0.125
    assert ruleset(tmp_path, "0").rules[0].holdout == 0
    for bad in ("60%", "10", "ten", "-5%", "true"):
        with pytest.raises(RuleProblems, match=r"r.yaml:6, rule 'cross-sell-holdout', field 'holdout': holdout "
                                               r"must be a percentage 0%..50%"):
            ruleset(tmp_path, bad)


def customer(n: int, **extra) -> Customer:
    return Customer.from_dict({"id": f"C-{n:04d}", "email": f"c{n}@example.com", "products": ["A"],
                               "owner": {"name": "Rep", "email": "rep@contoso.com"}, **extra})


def test_the_control_group_is_held_out_and_nothing_of_it_is_sent(tmp_path):
    evaluator = Evaluator(ruleset(tmp_path, "50%"),
                          Settings.from_env({"TABLES_CONNECTION_STRING": "UseDevelopmentStorage=true",
                                             "UNSUBSCRIBE_SIGNING_KEY": "k" * 32}))
    arms = {}
    for n in range(40):
        [firing] = evaluator.evaluate(customer(n), now=NOW, trigger="sweep")
        arms[firing.arm] = firing
        assert firing.arm == arm_of("cross-sell-holdout", f"C-{n:04d}", 0.5)
        statuses = [a["status"] for a in firing.to_dry_run_dict()["actions"]]
        if firing.arm == CONTROL:
            assert statuses == ["held_out"] * 3
            assert all(a.subject is None and not a.content for a in firing.actions)
            assert firing.to_messages(NOW) == []
            assert "holdout" in firing.actions[0].reason
        else:
            assert statuses == ["planned"] * 3
            assert len(firing.to_messages(NOW)) == 2  # the teams FYI travels inside the email's message
    assert set(arms) == {CONTROL, TREATMENT}


def test_what_could_not_be_sent_anyway_stays_suppressed_in_the_control_group(tmp_path):
    evaluator = Evaluator(ruleset(tmp_path, "50%"),
                          Settings.from_env({"TABLES_CONNECTION_STRING": "UseDevelopmentStorage=true"}))
    held = next(n for n in range(100) if arm_of("cross-sell-holdout", f"C-{n:04d}", 0.5) == CONTROL)
    [firing] = evaluator.evaluate(customer(held, email_opt_out=True), now=NOW, trigger="sweep")
    assert [a.status for a in firing.actions] == ["suppressed", "suppressed", "held_out"]


def test_a_rule_without_holdout_has_no_arm(tmp_path):
    evaluator = Evaluator(ruleset(tmp_path, "0%"),
                          Settings.from_env({"TABLES_CONNECTION_STRING": "UseDevelopmentStorage=true"}))
    [firing] = evaluator.evaluate(customer(1), now=NOW, trigger="sweep")
    assert firing.arm is None and all(a.status != "held_out" for a in firing.actions)

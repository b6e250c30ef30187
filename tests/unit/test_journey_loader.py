"""The journey file: the shipped one loads; mistakes are reported with file:line, transition and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.journeys.loader import load_journey
from shared.journeys.model import TriggerKind
from shared.rendering.engine import Renderer
from shared.rules import RuleProblems

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(ROOT / "templates", "ja-JP")


def test_the_shipped_journey_is_the_article_table(renderer):
    journey = load_journey(ROOT / "journeys", renderer)
    assert journey.state_ids == ("contract", "implementation", "onboarding", "utilization", "renewal")
    table = [(t.source, t.target, t.trigger.kind) for t in journey.transitions]
    assert table == [(None, "contract", TriggerKind.DEAL_CREATED), ("contract", "implementation", "deal_stage"),
                     ("implementation", "onboarding", "deal_stage"), ("onboarding", "utilization", "date"),
                     ("utilization", "renewal", "date"), ("renewal", "utilization", "deal_stage")]
    assert journey.transition("utilization").trigger.deal_field == "onboarding_due"
    assert journey.transition("renewed").new_cycle
    for transition in journey.transitions:  # each gives the owner a notice and a CRM task
        assert [(a.channel, a.route, a.template) for a in transition.rule.actions] == [
            ("teams", "owner", "journey_task"), ("crm_task", "task", None)]
        assert transition.rule.kind == "journey"


def write(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "journeys"
    folder.mkdir()
    (folder / "j.yaml").write_text(text, encoding="utf-8")
    return folder


BROKEN = """\
id: cs
follows: [subscription_new]
states: [contract, implementation]
transitions:
  - id: contract
    from: null
    to: contract
    on: {deal_created: [subscription_renewal]}
  - id: back
    from: implementation
    to: contract
    on: {deal_stage: [won]}
  - id: odd
    from: contract
    to: implementation
    on: {date: deal.signed_on}
    guard: "plan =="
    actions:
      - teams: owner
        template: nope
      - set: {stage: x}
"""


def test_problems_name_file_line_transition_and_field(tmp_path, renderer):
    with pytest.raises(RuleProblems) as caught:
        load_journey(write(tmp_path, BROKEN), renderer)
    text = caught.value.message
    assert text.startswith("7 problems")
    lines = text.splitlines()[1:]
    assert any("j.yaml:8" in line and "'contract'" in line and "not in the journey's follows" in line
               for line in lines)
    assert any("j.yaml:11" in line and "'back'" in line and "moves forward" in line for line in lines)
    assert any("j.yaml:16" in line and "deal dates are" in line for line in lines)
    assert any("j.yaml:17" in line and "guard" in line for line in lines)
    assert any("j.yaml:20" in line and "unknown card template 'nope'" in line for line in lines)
    assert any("j.yaml:21" in line and "unknown action key 'set'" in line for line in lines)


def test_a_missing_directory_means_no_journey(tmp_path, renderer):
    assert load_journey(tmp_path / "none", renderer) is None


def test_unknown_keys_and_states(tmp_path, renderer):
    folder = write(tmp_path, "id: cs\nfollows: [a]\nstates: [s1]\ncolour: red\ntransitions:\n"
                             "  - {id: t, from: s0, to: s1, on: {deal_stage: [won]}}\n")
    with pytest.raises(RuleProblems) as caught:
        load_journey(folder, renderer)
    assert "j.yaml:4" in caught.value.message and "unknown key 'colour'" in caught.value.message
    assert "unknown state 's0'" in caught.value.message


def test_templated_texts_are_rendered_at_load(tmp_path, renderer):
    folder = write(tmp_path, "id: cs\nfollows: [a]\nstates: [s1]\ntransitions:\n"
                             "  - id: t\n    from: null\n    to: s1\n    on: {deal_created: [a]}\n"
                             "    reason: \"{{ customer.nmae }}\"\n")
    with pytest.raises(RuleProblems) as caught:
        load_journey(folder, renderer)
    assert "j.yaml:9" in caught.value.message and "field 'reason'" in caught.value.message

"""Rule texts and templates are data: they render in an immutable sandbox and can never run code."""

import json

import jinja2
import pytest

from shared.rendering.engine import Renderer
from shared.settings import APP_ROOT
from tests.unit.test_rule_loader import GOOD, TEMPLATES, card_templates, problems, write


def exploit(marker) -> str:
    """What the review ran: Jinja's `self` reaches the module globals, from there os.system."""
    return ("{{ self.__init__.__globals__.__builtins__.__import__('os').system('touch " + str(marker) + "') }}")


@pytest.mark.parametrize("field", ["recommendation", "reason"])
def test_rule_text_reaching_python_internals_is_a_load_error_and_runs_nothing(tmp_path, field):
    marker = tmp_path / "pwned"
    rules = write(tmp_path, GOOD + f"  {field}: \"{exploit(marker)}\"\n")
    found = "\n".join(problems(rules))
    assert f"field '{field}': template error (en-US): not allowed in a template" in found
    assert not marker.exists()


def test_task_subject_reaching_python_internals_is_a_load_error(tmp_path):
    marker = tmp_path / "pwned"
    rules = write(tmp_path, GOOD + f"    - crm_task: {{subject: \"{exploit(marker)}\", due_in_days: 7}}\n")
    assert "not allowed in a template" in "\n".join(problems(rules))
    assert not marker.exists()


def test_template_file_reaching_python_internals_is_rejected_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    card = json.dumps({"type": "AdaptiveCard", "version": "1.5",
                       "body": [{"type": "TextBlock", "text": exploit(marker)}]})
    found = "\n".join(problems(write(tmp_path, GOOD), card_templates(tmp_path, card)))
    assert "cross_sell.card.json" in found and "unsafe" in found
    assert not marker.exists()


def test_compiled_rule_text_cannot_call_internals_or_mutate_values(tmp_path):
    renderer = Renderer(TEMPLATES)
    marker = tmp_path / "pwned"
    with pytest.raises(jinja2.exceptions.SecurityError):
        renderer.compile_text(exploit(marker))("ja-JP", {})
    with pytest.raises(jinja2.exceptions.SecurityError):  # immutable: no list.append, dict.update, ...
        renderer.compile_text("{{ items.append('x') }}")("ja-JP", {"items": []})
    assert not marker.exists()
    assert renderer.compile_text("{{ customer | upper }} 様")("ja-JP", {"customer": "abc"}) == "ABC 様"


def test_shipped_templates_and_rules_still_load():
    from shared.rules import load_ruleset

    assert load_ruleset(APP_ROOT / "rules", TEMPLATES).rules

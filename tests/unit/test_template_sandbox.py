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


class _Holder:
    """A context value whose attribute holds a bound `str.format` under another name (Jinja wraps those per value)."""

    def __init__(self):
        self.fmt = "{0.__class__.__init__.__globals__}".format
        self.label = "ok"


def _warm_then(renderer, warm: str, attack: str, context: dict):
    """Render `warm` twice (the sandbox remembers what it found safe), then `attack`."""
    for _ in range(2):
        renderer.compile_text(warm)("ja-JP", context)
    return renderer.compile_text(attack)("ja-JP", context)


def test_remembered_safe_attributes_do_not_open_unsafe_ones_on_the_same_types():
    from shared.domain.model import Customer

    renderer = Renderer(TEMPLATES)
    context = {"customer": Customer(id="C", name="Sample"), "params": {"a": "x"}, "holder": _Holder(),
               "items": ["a"]}
    for attack in ("{{ customer.__class__ }}", "{{ customer.name.__class__.__mro__ }}",
                   "{{ customer.name.__init__.__globals__ }}", "{{ holder.__dict__ }}"):
        with pytest.raises(jinja2.exceptions.SecurityError):
            _warm_then(renderer, "{{ customer.name }}{{ customer.name.upper() }}{{ holder.label }}", attack, context)
    # A remembered safe method of a type does not make its mutating methods callable.
    for attack in ("{{ params.update({'a': 'y'}) }}", "{{ params.clear() }}", "{{ items.append('b') }}",
                   "{{ items.pop() }}"):
        with pytest.raises(jinja2.exceptions.SecurityError):
            _warm_then(renderer, "{{ params.get('a') }}{{ items.index('a') }}{{ items.count('a') }}", attack,
                       context)
    assert context["params"] == {"a": "x"} and context["items"] == ["a"]


def test_a_format_method_stays_sandboxed_whatever_name_reaches_it_and_however_often():
    renderer = Renderer(TEMPLATES)
    context = {"holder": _Holder(), "text": "{0.__class__}"}
    for _ in range(3):  # the first access and every remembered one alike
        with pytest.raises(jinja2.exceptions.SecurityError):
            renderer.compile_text("{{ holder.fmt(holder) }}")("ja-JP", context)
        with pytest.raises(jinja2.exceptions.SecurityError):
            renderer.compile_text("{{ text.format(holder) }}")("ja-JP", context)
        assert renderer.compile_text("{{ '{0}-{1}'.format('a', holder.label) }}")("ja-JP", context) == "a-ok"


def test_builtin_methods_are_called_directly_but_unsafe_callables_are_still_refused():
    from jinja2.sandbox import unsafe

    renderer = Renderer(TEMPLATES)

    def alters():
        raise AssertionError("must not run")

    alters.alters_data = True
    context = {"params": {"a": "x"}, "marked": unsafe(alters), "alters": alters}
    for _ in range(2):
        assert renderer.compile_text("{{ params.get('a') }}-{{ params.get('b', 'none') }}")("ja-JP", context) \
            == "x-none"
        for attack in ("{{ marked() }}", "{{ alters() }}"):
            with pytest.raises(jinja2.exceptions.SecurityError):
                renderer.compile_text(attack)("ja-JP", context)

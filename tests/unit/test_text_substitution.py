"""Text templates of only text and `{{ a.b }}` values are filled in without Jinja: the same string (or the same
error) as the sandboxed render, for every shipped text template and rule text and for hostile values."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import date

import pytest
import yaml
from jinja2 import TemplateSyntaxError
from markupsafe import Markup

from shared.domain.model import Customer, Person
from shared.rendering.engine import Renderer, _render, _substitutions, one_line, template_context
from shared.settings import APP_ROOT

TEMPLATES = APP_ROOT / "templates"


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def shipped_texts() -> list[str]:
    """Every one-line text the app compiles with `compile_text`: mail subjects, card summaries, rule and journey
    texts (subjects, reasons, recommendations, descriptions)."""
    texts = [path.read_text(encoding="utf-8") for path in sorted(TEMPLATES.glob("*/*.subject.txt"))]
    texts += [json.loads(path.read_text(encoding="utf-8")).get("fallbackText", "")
              for path in sorted(TEMPLATES.glob("*/*.card.json"))]
    for folder in (APP_ROOT / "rules", APP_ROOT / "journeys"):
        for path in sorted(folder.glob("*.yaml")):
            texts += [text for text in _strings(yaml.safe_load(path.read_text(encoding="utf-8"))) if "{{" in text]
    return texts


# Sources that probe the edges of the fast path: attributes of every kind, names that are not variables,
# methods, private names, missing names, dicts, numbers, whitespace and line endings around values.
EDGE_TEXTS = [
    "{{ customer.name }}", "{{customer.name}}", "a {{ customer.contact_name }} b\n", "{{ owner.email }}",
    "{{ customer.owner.name }}", "{{ customer.manager.aad_object_id }}", "{{ locale }}", "{{ reason }}",
    "{{ rule.id }}", "{{ params.product }}", "{{ customer.usage.reports }}", "{{ customer.annual_spend }}",
    "{{ customer.products }}", "{{ customer.email_opt_out }}", "{{ true }}", "{{ None }}", "{{ missing }}",
    "{{ customer.missing }}", "{{ customer.to_dict }}", "{{ customer.__class__ }}", "{{ customer._x }}",
    "{{ owner.name }} / {{ owner.name }}", "line\r\n{{ customer.name }}", "{{- customer.name }}",
    "{{ customer.name -}} x", "{# c #}{{ customer.name }}", "{{ customer.name }} }} {", "\t{{ customer.name }}\u3000",
    "{{ customer . name }}", "{{ customer.name|upper }}", "{{ customer.name }}{% if true %}!{% endif %}",
    "{{ in }}", "{{ customer.if }}", "{{ and }}",
    "{{ customer.plan or '' }}", '{{ customer.name or "" }}', "{{ customer.missing or '' }}", "{{ reason or '' }}",
    "{{ customer.contract_end|date }}", "{{ customer.birthday | date }}", "{{ customer.name|date }}",
    "{{ customer.annual_spend|money }}", "{{ customer.name|money }}", "{{ params.product|product }}",
    "{{ customer.stage|product }}", "{{ customer.name|upper }}", "{{ customer.name|e }}", "{{ customer.name|attr }}",
    "{{ customer.name|nosuch }}", "{{ customer.plan or 'x' }}", "{{ customer.plan or '' or '' }}",
    "{{ customer.name|date or '' }}", "{{ customer.plan|date|date }}",
]

HOSTILE_NAMES = [
    "株式会社サンプル", "", "  padded  ", "\u3000全角\u3000", "line\nbreak", "cr\r\nlf", "sep\u2028para\u2029",
    "nul\x00bell\x07del\x7f", "tab\tvt\x0bff\x0c", "{{ 7 * 7 }}", "{% raw %}x{% endraw %}", "<script>alert(1)</script>",
    "*bold* _it_ [link](javascript:x) `code` # | ~", "back\\slash", "a" * 400, "\x85next", None,
    Markup("<b>marked</b>"), 42,
]


def customers() -> list[Customer]:
    base = Customer(id="C-1", name="Sample", contact_name="Taro", email="taro@example.com", plan="Basic",
                    contract_end=date(2027, 2, 15), birthday=date(1980, 2, 29),
                    owner=Person("Rep", "rep@contoso.com", "aad-1"), manager=Person("Boss", "boss@contoso.com"),
                    usage={"reports": 120}, annual_spend=1_200_000.0, products=("A",), stage="onboarding")
    people = [replace(base, name=name, contact_name=name, owner=Person(name, "rep@contoso.com"), plan=name,
                      stage=name) for name in HOSTILE_NAMES]
    return [base, *people, replace(base, owner=None, manager=None), replace(base, owner=Person(None, None)),
            replace(base, plan="", contract_end=None, annual_spend=None), replace(base, contract_end="2027-02-15")]


def _outcome(function, *args):
    try:
        return "ok", function(*args)
    except Exception as exc:  # the same error, as the same type and message
        return type(exc).__name__, str(exc)


def _jinja(template, context) -> str:
    return one_line(_render(template, context))


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


@pytest.mark.parametrize("source", sorted(set(shipped_texts() + EDGE_TEXTS)))
def test_filled_in_text_equals_the_sandboxed_render(renderer, source):
    compiling = _outcome(renderer.compile_text, source)
    if compiling[0] != "ok":  # a source Jinja refuses is refused when it is loaded, as before
        assert compiling[0] == _outcome(renderer._text[renderer.default_locale].from_string, source)[0]
        return
    compiled = compiling[1]
    for locale in renderer.locales:
        template = renderer._text[locale].from_string(source)
        for customer in customers():
            context = template_context(customer=customer, rule_id="rule-1", kind="cross_sell", locale=locale,
                                       today=date(2026, 11, 24), reason="why\nnot", recommendation=None,
                                       params={"product": "A", "years": 3})
            expected = _outcome(_jinja, template, context)
            # Twice: the first render may be the one that teaches the sandbox's verdicts the fast path relies on.
            assert _outcome(compiled, locale, context) == expected, (source, locale, customer.name)
            assert _outcome(compiled, locale, context) == expected, (source, locale, customer.name)


def test_the_shipped_summaries_and_task_subjects_take_the_fast_path():
    texts = shipped_texts()
    simple = [text for text in texts if _substitutions(text) is not None]
    assert "【クロスセル機会】{{ customer.name }}" in simple and "Cross-sell opportunity: {{ customer.name }}" in simple
    assert len(simple) >= len(texts) // 2
    # What is not plain text and values goes through Jinja.
    assert _substitutions("【ご契約更新のご案内】{{ customer.plan or '' }}（{{ customer.contract_end|date }}）")
    for source in ("{{ customer.name|upper }}", "{{ a|e }}", "{{ a or 'x' }}", "{{ a|date or '' }}",
                   "{% if x %}{% endif %}", "{{ true }}", "{{ a }}\r\n",
                   "{{ customer._x }}", "{# c #}{{ a }}", "{{- a }}", "{{ a }} }}"):
        assert _substitutions(source) is None, source


@pytest.mark.parametrize("source", ["{{ customer.name }} {{ customer. }}", "{{ customer.name }} {{ not }}"])
def test_a_broken_rule_text_is_still_a_load_error(renderer, source):
    with pytest.raises(TemplateSyntaxError):
        renderer.compile_text(source)


def test_a_final_newline_changes_no_one_lined_text():
    # The fast path drops a template file's final newline instead of letting one_line fold and strip it.
    chars = ["a", " ", "\n", "\r", "\x00", "\u2028", "\x85", "\u3000", "\x0b", "\t", "*"]
    for size in range(5):
        for text in map("".join, itertools.product(chars, repeat=size)):
            assert one_line(text + "\n") == one_line(text + "\n\n") == one_line(text), repr(text)

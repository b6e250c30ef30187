"""Rendering: hostile customer values stay harmless in cards, HTML, text and subjects; locales are chosen."""

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.domain.model import Customer
from shared.rendering.engine import Renderer, TemplateProblems
from shared.rules import Evaluator, load_ruleset
from shared.settings import APP_ROOT, Settings

FIXTURES = Path(__file__).parent.parent / "fixtures" / "rules"
NOW = datetime(2025, 11, 22, 0, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def hostile_firings():
    settings = Settings.from_env({"TABLES_CONNECTION_STRING": "UseDevelopmentStorage=true",
                                  "UNSUBSCRIBE_SIGNING_KEY": "k" * 32})
    evaluator = Evaluator(load_ruleset(APP_ROOT / "rules", APP_ROOT / "templates"), settings)
    customer = Customer.from_json((FIXTURES / "hostile.json").read_text(encoding="utf-8"))
    return {f.rule_id: f for f in evaluator.evaluate(customer, now=NOW, trigger="sweep")}


def _all_strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _all_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _all_strings(value)


def test_hostile_values_in_a_card(hostile_firings):
    teams = hostile_firings["cross-sell-a-to-b"].actions[0]
    card = teams.content["card"]
    # The structure is the template's: the name's JSON breakers became text, not keys.
    assert set(card) == {"type", "$schema", "version", "fallbackText", "body", "actions"}
    assert json.loads(json.dumps(card)) == card
    strings = list(_all_strings(card))
    assert not any("\r" in s or "\n" in s for s in strings)
    assert all("[click](" not in s and "**now**" not in s for s in strings)  # markdown is escaped
    assert any("\\[click\\]\\(https://evil.example\\) \\*\\*now\\*\\*" in s for s in strings)
    # The javascript: CRM link is dropped with its button; the signed outcome buttons stay.
    assert all(action["url"].startswith("http") for action in card["actions"])
    assert [action["url"].rsplit("decision=", 1)[1] for action in card["actions"]] == \
        ["in_progress", "won", "not_now"]
    assert "\n" not in teams.subject and "Bcc:" in teams.subject  # the header text stays inert on one line


def test_hostile_values_in_an_email(hostile_firings):
    email = hostile_firings["birthday-mail"].actions[0]
    html, text, subject = email.content["html"], email.content["text"], email.subject
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&#34;}],&#34;x&#34;" in html or "&quot;}]" in html
    assert "\r" not in subject and "\n" not in subject
    assert not re.search(r"^Bcc:", text, re.MULTILINE)  # CR/LF in names cannot start a new line
    assert not re.search(r"^Please wire money", text, re.MULTILINE)
    assert email.content["unsubscribe_url"] in text


def test_locale_choice(tmp_path):
    renderer = Renderer(APP_ROOT / "templates", "ja-JP")
    assert renderer.locale_for("en-US") == "en-US"
    assert renderer.locale_for("en-GB") == "en-US"
    assert renderer.locale_for("ja") == "ja-JP"
    assert renderer.locale_for("fr-FR") == "ja-JP"
    assert renderer.locale_for(None) == "ja-JP"
    assert Renderer(APP_ROOT / "templates", "en-US").locale_for(None) == "en-US"


def test_english_customer_gets_english_content():
    settings = Settings.from_env({"TABLES_CONNECTION_STRING": "UseDevelopmentStorage=true"})
    evaluator = Evaluator(load_ruleset(APP_ROOT / "rules", APP_ROOT / "templates"), settings)
    customer = Customer.from_dict({"id": "C-5", "name": "Contoso", "contact_name": "Jane", "email": "j@example.com",
                                   "locale": "en-US", "birthday": "1980-11-22",
                                   "owner": {"name": "Emma", "email": "emma@contoso.com"}})
    email, fyi = {f.rule_id: f for f in evaluator.evaluate(customer, now=NOW, trigger="sweep")}[
        "birthday-mail"].actions
    assert email.subject == "Happy birthday, Jane!" and "Dear Jane," in email.content["text"]
    assert email.content["locale"] == "en-US" and fyi.subject == "Sent: email to Contoso"


@pytest.mark.parametrize(("locale", "signature"), [("ja-JP", "担当: 佐藤 花子（hanako@contoso.com）"),
                                                   ("en-US", "Emma (emma@contoso.com)")])
def test_plain_text_signature_sits_on_its_own_lines(locale, signature):
    settings = Settings.from_env({"TABLES_CONNECTION_STRING": "UseDevelopmentStorage=true"})
    evaluator = Evaluator(load_ruleset(APP_ROOT / "rules", APP_ROOT / "templates"), settings)
    owner = {"name": signature.split("（")[0].removeprefix("担当: ").split(" (")[0],
             "email": "hanako@contoso.com" if locale == "ja-JP" else "emma@contoso.com"}
    customer = Customer.from_dict({"id": "C-6", "name": "Contoso", "contact_name": "Jane", "email": "j@example.com",
                                   "locale": locale, "birthday": "1980-11-22", "owner": owner})
    email = {f.rule_id: f for f in evaluator.evaluate(customer, now=NOW, trigger="sweep")}["birthday-mail"].actions[0]
    lines = email.content["text"].splitlines()
    assert signature in lines and lines[lines.index(signature) + 1] == "--"


def test_card_shapes_build_like_the_json(tmp_path):
    """Cards are built by generated code: `$when` drops, unsafe links, constants and nesting as in the JSON."""
    import shutil

    from shared.rendering.engine import TemplateProblems

    for locale in ("ja-JP", "en-US"):
        shutil.copytree(APP_ROOT / "templates" / locale, tmp_path / locale)
    card = {"type": "AdaptiveCard", "version": "1.5", "n": 1.5, "flag": True, "none": None,
            "body": [{"type": "TextBlock", "text": "{{ customer.name }}", "$when": "customer.name"},
                     {"type": "Image", "url": "{{ crm_url }}"}, [1, "{{ reason }}"]],
            "nested": {"inner": {"text": "a*{{ reason }}", "$when": "reason"}}}
    for locale in ("ja-JP", "en-US"):
        (tmp_path / locale / "shape.card.json").write_text(json.dumps(card), encoding="utf-8")
    renderer = Renderer(tmp_path, "ja-JP")
    customer = Customer.from_dict({"id": "C-1", "name": "A_B", "crm_url": "javascript:alert(1)"})
    context = {"customer": customer, "crm_url": customer.crm_url, "reason": "r*"}
    built = renderer.card("shape", "ja-JP", context)
    assert built == {"type": "AdaptiveCard", "version": "1.5", "n": 1.5, "flag": True, "none": None,
                     "body": [{"type": "TextBlock", "text": "A\\_B"}, [1, "r\\*"]],
                     "nested": {"inner": {"text": "a*r\\*"}}}
    assert renderer.card("shape", "ja-JP", context)["body"] is not built["body"]  # fresh objects per card

    deep: dict = {"text": "{{ reason }}"}
    for _ in range(150):
        deep = {"items": [deep]}
    for locale in ("ja-JP", "en-US"):
        (tmp_path / locale / "shape.card.json").write_text(json.dumps({"body": [deep]}), encoding="utf-8")
    with pytest.raises(TemplateProblems, match="nested too deeply"):
        Renderer(tmp_path, "ja-JP")


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")


@pytest.mark.parametrize(("locale", "subject", "body"), [
    ("en-US", "1 year with your Product A: thank you", "It has been 1 year since you bought Product A."),
    ("ja-JP", "【ご購入1周年】製品Aをご愛用いただきありがとうございます",
     "製品Aをご購入いただいてから1年が経ちました。"),
])
def test_anniversary_mail_reads_naturally_in_each_language(locale, subject, body):
    settings = Settings.from_env({"TABLES_CONNECTION_STRING": "UseDevelopmentStorage=true"})
    evaluator = Evaluator(load_ruleset(APP_ROOT / "rules", APP_ROOT / "templates"), settings)
    customer = Customer.from_dict({"id": "C-7", "name": "Contoso", "contact_name": "Jane", "email": "j@example.com",
                                   "locale": locale, "timezone": "Asia/Tokyo",
                                   "purchases": [{"product": "A", "date": "2024-11-22", "amount": 1000}]})
    email = {f.rule_id: f for f in evaluator.evaluate(customer, now=NOW, trigger="sweep")}[
        "purchase-anniversary-a"].actions[0]
    assert email.subject == subject and body in email.content["text"] and body in email.content["html"]
    if locale == "en-US":
        assert not _CJK.search(email.subject + email.content["text"] + email.content["html"])


def test_product_names_and_plural_forms_in_templates(tmp_path):
    renderer = Renderer(APP_ROOT / "templates", "ja-JP")
    render = renderer.compile_text("{{ 'X'|product }} / {{ 'NEW'|product }} / {{ n|plural('year') }} / "
                                   "{{ m|plural('day') }}")
    assert render("en-US", {"n": 1, "m": 2}) == "Service X / NEW / 1 year / 2 days"
    assert render("ja-JP", {"n": 2, "m": 1}).startswith("サービスX / NEW")
    # Every product of the catalog needs a name per locale.
    broken = tmp_path / "templates"
    shutil.copytree(APP_ROOT / "templates", broken)
    (broken / "products.yaml").write_text("A: {ja-JP: 製品A}\n", encoding="utf-8")
    with pytest.raises(TemplateProblems, match="product 'A' has no name for en-US"):
        Renderer(broken, "ja-JP")
def test_only_http_links_can_be_trusted_and_they_render_unescaped():
    from shared.rendering.engine import TrustedUrl, _finalize_card_text

    for bad in ("javascript:alert(1)", "https://x.example/a b", 'https://x.example/"><script>'):
        with pytest.raises(ValueError):
            TrustedUrl(bad)
    url = "https://app.example/api/opportunities/s0001~a_b:C-1:ever/outcome?token=ab_c-d.e_f"
    assert _finalize_card_text(TrustedUrl(url)) == url  # a trusted link keeps its _ and ~
    assert _finalize_card_text(url) != url  # any other value is markdown-escaped

"""Templates → Adaptive Card 1.5 (Teams), HTML + plain-text email, and short text (subjects, task titles).

Layout of a templates directory (one folder per locale, the same names in each):

    <locale>/<name>.card.json      Adaptive Card; string values may hold Jinja ({{ customer.name }})
    <locale>/<name>.subject.txt    email subject (one line)
    <locale>/<name>.html           email HTML (autoescaped; usually `{% extends "_layout.html" %}`)
    <locale>/<name>.txt            email plain text
    products.yaml                  display names of product codes per locale, for `{{ code|product }}`

Hostile values cannot break out of any form: cards are parsed as JSON *before* rendering and each string leaf is
rendered on its own (JSON breakers are impossible; values are markdown-escaped and kept on one line; URL leaves
accept only http(s)), HTML is autoescaped, text values have CR/LF folded to spaces, subjects are one line.
Templates use StrictUndefined, so a misspelt variable is an error when the template is checked at load time
(`check()` renders everything with a full sample customer), not a silently empty mail.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from shared.domain.errors import InvalidInput, Location
from shared.domain.vocabulary import TemplateKind

EMAIL_PARTS = {"subject": ".subject.txt", "html": ".html", "text": ".txt"}
MAX_CARD_BYTES = 28 * 1024  # Teams Workflows webhook limit
MAX_SUBJECT_CHARS = 255
_URL_KEYS = frozenset({"url", "iconUrl", "backgroundImage"})
_PLAIN_KEYS = frozenset({"fallbackText", "speak"})  # shown as plain text (notification previews), not markdown
_MARKDOWN = re.compile(r"[\\*_\[\]()~`<>#|]")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


class TemplateProblems(InvalidInput):
    """Broken or incomplete template files; `problems` lists (location, message) pairs."""

    def __init__(self, problems: list[tuple[Location, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{where}: {message}" for where, message in problems))


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


# ---------------------------------------------------------------------------------------------------------------
# Value formatting shared by every form.
# ---------------------------------------------------------------------------------------------------------------
def one_line(value: Any) -> str:
    """Text for places where a line break would forge structure (subjects, card text, plain-text values)."""
    text = str(value)
    if text.isprintable():  # the common case, checked in C: no line breaks or control characters
        return text.strip()
    return _CONTROL.sub("", _LINE_BREAKS.sub(" ", text)).strip()


def _finalize_text(value: Any) -> Any:
    if value is None:
        return ""
    return one_line(value) if isinstance(value, str) else value


class TrustedUrl(str):
    """A link the app built (and signed) itself, e.g. a card's outcome buttons: card leaves take it as it is.

    Markdown-escaping a long signed URL and un-escaping it again in its `url` leaf costs more than the rest of a
    card; only http(s) URLs without spaces, quotes or angle brackets can be made trusted.
    """

    __slots__ = ()

    def __new__(cls, url: str) -> TrustedUrl:
        if not _SAFE_URL.match(url):
            raise ValueError("not an http(s) URL")
        return super().__new__(cls, url)


_SAFE_URL = re.compile(r"^https?://[^\s\"'<>]+$")


def _finalize_card_text(value: Any) -> str:
    if value is None:
        return ""
    if value.__class__ is TrustedUrl:
        return value
    # Called for every value of every card: one_line's common case inlined, and the substitution (costly even
    # when nothing matches) only for text that holds a markdown character.
    text = str(value)
    text = text.strip() if text.isprintable() else one_line(text)
    return text if _MARKDOWN.search(text) is None else _MARKDOWN.sub(r"\\\g<0>", text)


def _finalize_url(value: Any) -> str:
    text = "" if value is None else one_line(value)
    return text if _SAFE_URL.match(text) else ""


def _format_date(value: Any, locale: str) -> str:
    if not isinstance(value, date):
        return "" if value is None else str(value)
    if locale.startswith("ja"):
        return f"{value.year}年{value.month}月{value.day}日"
    return value.strftime("%B ") + f"{value.day}, {value.year}"


def _format_money(value: Any) -> str:
    """Amounts are yen in every locale (the CRM's currency), e.g. ¥1,200,000."""
    if value is None:
        return ""
    try:
        return f"¥{float(value):,.0f}"
    except (TypeError, ValueError):
        return str(value)


def _plural(count: Any, singular: str, plural: str | None = None) -> str:
    """`{{ n|plural('year') }}` → "1 year", "2 years" (`plural` for irregular words: `plural('day', 'days')`)."""
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def _product_namer(names: Mapping[str, Mapping[str, str]], locale: str) -> Callable[[Any], str]:
    """`{{ 'A'|product }}`: the product's display name in this locale, else its code (nothing for no product)."""
    def product(code: Any) -> str:
        if code is None or code == "":
            return ""
        return names.get(str(code), {}).get(locale) or str(code)

    return product


def load_product_names(path: Path, locales: tuple[str, ...]) -> tuple[dict[str, dict[str, str]], list[str]]:
    """(code → locale → display name, problems) from a products.yaml; every product needs a name per locale."""
    if not path.is_file():
        return {}, []
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return {}, [f"not valid YAML: {exc}"]
    if not isinstance(raw, dict):
        return {}, ["a mapping of product codes to {<locale>: <display name>, ...}"]
    names: dict[str, dict[str, str]] = {}
    problems = []
    for code, by_locale in raw.items():
        if not isinstance(by_locale, dict) or not all(isinstance(v, str) and v for v in by_locale.values()):
            problems.append(f"product {code!r}: give {{<locale>: <display name>}}")
            continue
        missing = [locale for locale in locales if locale not in by_locale]
        if missing:
            problems.append(f"product {code!r} has no name for {', '.join(missing)}")
        names[str(code)] = {str(k): v for k, v in by_locale.items()}
    return names, problems


# Per type, the attributes the sandbox found safe: those that held data, and those that held a bound method.
_SAFE_ATTRIBUTES: dict[type, set[str]] = {}
_SAFE_METHODS: dict[type, set[str]] = {}
_BOUND_METHODS = frozenset({types.MethodType, types.BuiltinMethodType})  # final types: `in` is exact
_FORMAT_METHODS = frozenset({"format", "format_map"})
_NOTHING: frozenset[str] = frozenset()


class _Sandbox(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment whose safety verdict per (type, attribute) is computed once.

    Jinja's check (`is_safe_attribute`: underscore names, function/method/frame/code internals, mutating methods of
    known mutable types) depends only on the object's type and the attribute's name, yet it ran on every attribute
    access of every render and was most of the sandbox's cost. Only safe verdicts are remembered. A bound
    `format`/`format_map` method always takes the full path whatever name it was reached by, since the sandbox
    wraps those per value (str.format could otherwise reach attributes through its format fields)."""

    def getattr(self, obj: Any, attribute: str, _safe: Mapping[type, set[str]] = _SAFE_ATTRIBUTES,
                _methods: frozenset[type] = _BOUND_METHODS, _type: type = type) -> Any:
        # Runs for every attribute of every render: names bound as defaults are local reads, `type(x)` is a
        # specialised call, a dict subscript needs no call (a type seen for the first time raises KeyError once).
        try:
            value = getattr(obj, attribute)
        except AttributeError:
            try:
                return obj[attribute]
            except (TypeError, LookupError):
                return self.undefined(obj=obj, name=attribute)
        try:
            if attribute in _safe[_type(obj)] and _type(value) not in _methods:
                return value  # a remembered safe (type, name) holding data, not a method: nothing to wrap
        except KeyError:
            pass
        return self._checked_getattr(obj, attribute, value)

    def _checked_getattr(self, obj: Any, attribute: str, value: Any) -> Any:
        if type(value) in _BOUND_METHODS:
            if value.__name__ in _FORMAT_METHODS:  # str.format / format_map, by whatever name: Jinja wraps it
                return super().getattr(obj, attribute)
            if attribute in _SAFE_METHODS.get(type(obj), _NOTHING):
                return value
        if not self.is_safe_attribute(obj, attribute, value):
            return self.unsafe_undefined(obj, attribute)
        data, methods = _SAFE_ATTRIBUTES.setdefault(type(obj), set()), _SAFE_METHODS.setdefault(type(obj), set())
        (methods if type(value) in _BOUND_METHODS else data).add(attribute)  # both keyed: no KeyError again
        return value

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # A builtin method (`params.get`) carries no attributes, so Jinja's `unsafe_callable`/`alters_data` test
        # is always false for it: call it straight away. Whether it may be reached at all was decided by getattr
        # (mutating methods such as `dict.update` never get here).
        if type(__obj) is types.BuiltinMethodType:
            return __context.call(__obj, *args, **kwargs)
        return super().call(__context, __obj, *args, **kwargs)


def _environment(loader: jinja2.BaseLoader | None, locale: str, *, autoescape: bool,
                 finalize: Callable[[Any], Any], blocks_trim: bool = True,
                 products: Mapping[str, Mapping[str, str]] | None = None) -> jinja2.Environment:
    # Sandboxed and immutable: templates and rule texts are data written by rule authors, so they may read the
    # context but never reach Python internals (`__class__`, `__globals__`, ...) nor mutate values (`list.append`).
    # The sandbox checks happen per attribute access and call, inside the compiled template: templates are still
    # compiled once, so rendering stays close to the unsandboxed speed (bench/rules.py measures both).
    # autoescape is chosen per form: on for HTML; off for text, subjects and card leaves (escaped by finalize).
    # auto_reload off: templates are compiled once per process, so no file is stat'ed again on every render.
    env = _Sandbox(
        loader=loader, autoescape=autoescape, undefined=jinja2.StrictUndefined,
        finalize=finalize, keep_trailing_newline=True, trim_blocks=blocks_trim, lstrip_blocks=blocks_trim,
        auto_reload=False)
    env.filters["date"] = lambda value: _format_date(value, locale)
    env.filters["money"] = _format_money
    env.filters["plural"] = _plural
    env.filters["product"] = _product_namer(products or {}, locale)
    return env


def _render(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    """Template.render without copying the environment's globals into a fresh context (a third of the cost).

    The context is built directly on `context` (as `new_context(context, shared=True)` does) but without the set of
    global names, which only `{% import %}` uses and which costs as much as the rest of the context.
    """
    env = template.environment
    return env.concat(template.root_render_func(env.context_class(env, context, template.name, template.blocks)))


# ---------------------------------------------------------------------------------------------------------------
# Cards: the JSON is parsed once at load; its string leaves (and `$when` conditions) are compiled into ONE Jinja
# template, leaves separated by NUL, which no rendered value can contain (finalize drops control characters).
# Rendering a card is then one template render plus a split, not one render per leaf (creating a Jinja context is
# what costs). Values are markdown-escaped as they are rendered; URL and plain-text leaves are un-escaped after.
# ---------------------------------------------------------------------------------------------------------------
_DROP = object()
_SEP = "\x00"
_UNESCAPE = re.compile(r"\\([\\*_\[\]()~`<>#|])")


def _plain_leaf(text: str) -> str:
    return _UNESCAPE.sub(r"\1", text) if "\\" in text else text


def _url_leaf(text: str) -> str:
    return _finalize_url(_plain_leaf(text))


_LEAF_KINDS: Mapping[str, Callable[[str], str] | None] = {"text": None, "plain": _plain_leaf, "url": _url_leaf}


def _leaf_kind(key: str | None) -> str:
    return "url" if key in _URL_KEYS else "plain" if key in _PLAIN_KEYS else "text"


class _CardTemplate:
    def __init__(self, data: Any, env: jinja2.Environment):
        self.sources: list[str] = []
        self.shape = self._compile(data, None, ())
        self.template = env.from_string(_SEP.join(self.sources))
        self.build = _builder(self.shape)
        # Size of everything but the rendered values (template sources count as an over-estimate).
        self.skeleton_bytes = len(json.dumps(data, ensure_ascii=False).encode("utf-8"))

    def _slot(self, source: str, guards: tuple[str, ...]) -> int:
        if _SEP in source:
            raise ValueError("card templates cannot contain NUL characters")
        if guards:  # a leaf inside a `$when` element renders only when the element is kept
            source = "{% if " + " and ".join(f"({g})" for g in guards) + " %}" + source + "{% endif %}"
        self.sources.append(source)
        return len(self.sources) - 1

    def _compile(self, node: Any, key: str | None, guards: tuple[str, ...]) -> tuple:
        if isinstance(node, str) and ("{{" in node or "{%" in node):
            return ("slot", self._slot(node, guards), _leaf_kind(key))
        if isinstance(node, list):
            return ("list", [self._compile(item, key, guards) for item in node])
        if isinstance(node, dict):
            condition = node.get("$when")
            test = None
            if condition is not None:
                test = self._slot("{% if " + str(condition) + " %}1{% endif %}", guards)
                guards = (*guards, str(condition))
            members = [(k, self._compile(v, k, guards)) for k, v in node.items() if k != "$when"]
            return ("dict", test, members)
        return ("const", node)

    def render(self, context: Mapping[str, Any]) -> tuple[dict, int]:
        """The card and an upper bound of its JSON size in bytes (exact size only needed near the limit)."""
        text = _render(self.template, context)
        return self.build(text.split(_SEP)), self.skeleton_bytes + len(text.encode("utf-8"))


def _builder(shape: tuple) -> Callable[[list[str]], Any]:
    """The shape as ONE generated Python expression of dict and list displays (like the card JSON itself), over
    the list of rendered leaves `r`: building a card is then a single call, no per-node closures or dispatch.

    Generated rather than interpreted because it is measurably faster: a plain recursive builder walking the same
    shape took ~3× as long per card on the repo's cards. The generated text contains only repr'd keys, literal
    constants and indexes into `r`; no template or customer text is ever part of it."""
    constants: list[Any] = []
    try:
        code = compile("lambda r: " + _expression(shape, constants), "<card>", "eval")
    except (SyntaxError, RecursionError):  # ~100 levels of nesting; Teams renders far fewer
        raise ValueError("card elements are nested too deeply") from None
    namespace = {"K": constants, "DROP": _DROP, "kept": _kept, "linked": _linked, **_LEAF_POST}
    return eval(code, namespace)  # noqa: S307 (generated from the card's shape: keys are repr'd, values indexed)


_LEAF_POST = {"plain": _plain_leaf, "url": _url_leaf}


def _expression(shape: tuple, constants: list[Any]) -> str:
    tag = shape[0]
    if tag == "const":
        value = shape[1]
        if value is None or isinstance(value, str | bool | int):
            return repr(value)  # a literal: the same value, no lookup
        constants.append(value)
        return f"K[{len(constants) - 1}]"
    if tag == "slot":
        index, kind = shape[1], shape[2]
        return f"r[{index}]" if _LEAF_KINDS[kind] is None else f"{kind}(r[{index}])"
    if tag == "list":
        items = ", ".join(_expression(item, constants) for item in shape[1])
        droppable = any(item[0] == "dict" and _droppable(item) for item in shape[1])
        return f"kept([{items}])" if droppable else f"[{items}]"
    test, members = shape[1], shape[2]
    result = "{" + ", ".join(f"{k!r}: {_expression(v, constants)}" for k, v in members) + "}"
    links = tuple(k for k, v in members if k in _URL_KEYS and v[0] == "slot")
    if links:
        result = f"linked({result}, {links!r})"
    # Members of an element that `$when` drops are not even built (its leaves rendered empty anyway).
    return result if test is None else f"({result} if r[{test}] == '1' else DROP)"


def _droppable(shape: tuple) -> bool:
    return shape[1] is not None or any(k in _URL_KEYS and v[0] == "slot" for k, v in shape[2])


def _kept(items: list[Any]) -> list[Any]:
    return [item for item in items if item is not _DROP]


def _linked(element: dict, links: tuple[str, ...]) -> Any:
    for key in links:
        if element[key] == "":
            return _DROP  # an unsafe or missing link: drop the element (a button must have a target)
    return element


class Renderer:
    """All templates of one directory, compiled once per process. Thread-safe after construction."""

    def __init__(self, templates_dir: Path, default_locale: str = "ja-JP"):
        self.dir = Path(templates_dir)
        if not self.dir.is_dir():
            raise InvalidInput("templates directory does not exist", Location(file=str(self.dir)))
        self.locales = tuple(sorted(p.name for p in self.dir.iterdir() if p.is_dir() and _is_locale(p.name)))
        if not self.locales:
            raise InvalidInput("no locale folders (ja-JP, en-US, ...) in the templates directory",
                               Location(file=str(self.dir)))
        self.default_locale = default_locale if default_locale in self.locales else self.locales[0]
        self._html: dict[str, jinja2.Environment] = {}
        self._text: dict[str, jinja2.Environment] = {}
        self._cards: dict[tuple[str, str], _CardTemplate] = {}
        self._inline: dict[tuple[str, str], jinja2.Template] = {}
        self._emails: dict[tuple[str, str], tuple[jinja2.Template, jinja2.Template, jinja2.Template]] = {}
        problems: list[tuple[Location, str]] = []
        catalog = self.dir / "products.yaml"
        self.products, product_problems = load_product_names(catalog, self.locales)
        problems += [(Location(str(catalog)), problem) for problem in product_problems]
        names: dict[str, set[str]] = {TemplateKind.CARD: set(), TemplateKind.EMAIL: set()}
        for locale in self.locales:
            loader = jinja2.FileSystemLoader(str(self.dir / locale))
            self._html[locale] = _environment(loader, locale, autoescape=True, finalize=_finalize_text,
                                              products=self.products)
            self._text[locale] = _environment(loader, locale, autoescape=False, finalize=_finalize_text,
                                              products=self.products)
            card_env = _environment(None, locale, autoescape=False, finalize=_finalize_card_text,
                                    blocks_trim=False, products=self.products)
            for path in sorted((self.dir / locale).iterdir()):
                if path.name.endswith(".card.json"):
                    name = path.name.removesuffix(".card.json")
                    names[TemplateKind.CARD].add(name)
                    try:
                        data = json.loads(path.read_text(encoding="utf-8"))
                        self._cards[(locale, name)] = _CardTemplate(data, card_env)
                    except json.JSONDecodeError as exc:
                        problems.append((Location(str(path), exc.lineno), f"not valid JSON: {exc.msg}"))
                    except (jinja2.TemplateSyntaxError, ValueError) as exc:
                        problems.append((Location(str(path)), f"template error: {exc}"))
                elif path.name.endswith(".subject.txt"):
                    names[TemplateKind.EMAIL].add(path.name.removesuffix(".subject.txt"))
            for name in names[TemplateKind.EMAIL]:
                parts = []
                for part, suffix in EMAIL_PARTS.items():
                    env = self._html[locale] if part == "html" else self._text[locale]
                    try:
                        parts.append(env.get_template(name + suffix))
                    except jinja2.TemplateNotFound:
                        problems.append((Location(str(self.dir / locale)),
                                         f"email template {name!r} has no {part} part ({name}{suffix})"))
                    except jinja2.TemplateSyntaxError as exc:
                        problems.append((Location(str(self.dir / locale / (name + suffix)), exc.lineno),
                                         f"template error: {exc.message}"))
                if len(parts) == len(EMAIL_PARTS):
                    self._emails[(locale, name)] = (parts[0], parts[1], parts[2])
        self.names = {form: frozenset(found) for form, found in names.items()}
        for form, found in self.names.items():
            for name in found:
                for locale in self.locales:
                    if not self.has(name, form, locale):
                        problems.append((Location(str(self.dir / locale)),
                                         f"{form} template {name!r} is missing for locale {locale}"))
        if problems:
            raise TemplateProblems(problems)

    # --- lookup ----------------------------------------------------------------------------------------------
    def has(self, name: str, form: str, locale: str | None = None) -> bool:
        locales = [locale] if locale else self.locales
        if form == TemplateKind.CARD:
            return all((loc, name) in self._cards for loc in locales)
        return all((self.dir / loc / f"{name}.subject.txt").is_file() for loc in locales)

    def locale_for(self, customer_locale: str | None) -> str:
        """The customer's locale when we have templates for it (or for its language), else the default."""
        if customer_locale:
            if customer_locale in self.locales:
                return customer_locale
            language = customer_locale.replace("_", "-").split("-")[0].lower()
            for locale in self.locales:
                if locale.split("-")[0].lower() == language:
                    return locale
        return self.default_locale

    # --- rendering -------------------------------------------------------------------------------------------
    def card(self, name: str, locale: str, context: Mapping[str, Any]) -> dict:
        card, estimate = self._cards[(locale, name)].render(context)
        # JSON escaping can add a little to rendered values, so the bound is doubled before trusting it.
        size = estimate if estimate * 2 < MAX_CARD_BYTES else len(json.dumps(card, ensure_ascii=False).encode())
        if size > MAX_CARD_BYTES:
            raise InvalidInput(f"card {name!r} is {size:,} bytes; Teams accepts at most {MAX_CARD_BYTES:,}")
        return card

    def email(self, name: str, locale: str, context: Mapping[str, Any]) -> RenderedEmail:
        subject, html, text = self._emails[(locale, name)]  # compiled at load (no loader lookup per mail)
        return RenderedEmail(subject=one_line(_render(subject, context))[:MAX_SUBJECT_CHARS],
                             html=_render(html, context), text=_render(text, context))

    def compile_text(self, source: str) -> Callable[[str, Mapping[str, Any]], str]:
        """A one-line text template from a rule (task subject, recommendation, reason), compiled per locale."""
        pieces = _substitutions(source) if "{{" in source else None
        if pieces is None:
            templates = {locale: self._text[locale].from_string(source) for locale in self.locales}
        else:
            # Filled in directly nearly always: checked now (a syntax error is a load error), compiled when first
            # needed (compiling every rule text in every locale is most of the start-up).
            self._text[self.default_locale].parse(source)
            templates = {}
        if "{{" not in source and "{%" not in source:
            plain = one_line(source)
            return lambda locale, context: plain

        def render(locale: str, context: Mapping[str, Any]) -> str:
            template = templates.get(locale)
            if template is None:
                template = templates[locale] = self._text[locale].from_string(source)
            return one_line(_render(template, context))

        if pieces is None:
            return render
        return _substituting(pieces, {locale: self._text[locale].filters for locale in self.locales}, render)

    def check(self, sample_context: Callable[[str], dict]) -> list[str]:
        """Render every template in every locale with a full sample context; the template errors found."""
        errors: list[str] = []
        for locale in self.locales:
            context = sample_context(locale)
            for name in sorted(self.names[TemplateKind.CARD]):
                try:
                    card = self.card(name, locale, context)
                    if card.get("type") != "AdaptiveCard" or str(card.get("version")) != "1.5":
                        errors.append(f"{locale}/{name}.card.json: must be an AdaptiveCard of version 1.5")
                except (jinja2.TemplateError, InvalidInput, TypeError) as exc:
                    errors.append(f"{locale}/{name}.card.json: {exc}")
            for name in sorted(self.names[TemplateKind.EMAIL]):
                try:
                    mail = self.email(name, locale, context)
                    if context.get("unsubscribe_url") and context["unsubscribe_url"] not in mail.text:
                        errors.append(f"{locale}/{name}.txt: the plain-text mail must show {{{{ unsubscribe_url }}}}")
                    if context.get("unsubscribe_url") and _html_attr(context["unsubscribe_url"]) not in mail.html:
                        errors.append(f"{locale}/{name}.html: the HTML mail must link {{{{ unsubscribe_url }}}}")
                except (jinja2.TemplateError, TypeError) as exc:
                    errors.append(f"{locale}/{name}: {exc}")
        return errors


# ---------------------------------------------------------------------------------------------------------------
# Text templates that are only text and simple values (most subjects and task titles) are filled in directly: the
# same string as the sandboxed render, without creating a Jinja context, which costs more than such a template's
# whole output. A value is `{{ name.attr.attr }}`, optionally `{{ ... or '' }}` or one filter without arguments
# (`{{ ... |date }}`, the locale's own filter function, as Jinja calls it). Each is read the way the sandbox reads
# it (a context variable, then attributes the sandbox has already judged safe data on that type) and finalized the
# same way; anything else (a missing name, a dict, a number, a name the sandbox has not judged yet) renders through
# Jinja, which then raises, or answers and remembers the verdict. No code from the template ever runs either way.
# ---------------------------------------------------------------------------------------------------------------
_VALUE = re.compile(r"\{\{ *([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*)"
                    r"(?: or (?:''|\"\")(?P<empty>)| *\| *(?P<filter>[A-Za-z][A-Za-z0-9_]*))? *\}\}")
_JINJA_CONSTANTS = frozenset({"true", "false", "none", "True", "False", "None"})  # literals, not variables

# The app's own one-argument filters (see _environment); Jinja's built-in ones, some of which take the environment
# or the context as well, are left to Jinja.
_PLAIN_FILTERS = frozenset({None, "date", "money", "product"})
_Value = tuple[tuple[str, ...], bool, str | None]  # attribute path, `or ''`, filter name


def _substitutions(source: str) -> tuple[str | _Value, ...] | None:
    """The template as literal texts and values, or None when it holds anything else (blocks, comments, other
    expressions, filter arguments, whitespace control, a carriage return Jinja would normalize)."""
    pieces: list[str | _Value] = []
    start = 0
    for match in _VALUE.finditer(source):
        pieces.append(source[start:match.start()])
        path = tuple(match.group(1).split("."))
        if path[0] in _JINJA_CONSTANTS or match.group("filter") not in _PLAIN_FILTERS:
            return None
        pieces.append((path, match.group("empty") is not None, match.group("filter")))
        start = match.end()
    # one_line(text + "\n") == one_line(text): the final newline of a template file is dropped here rather than
    # folded to a space and stripped again on every render (which takes one_line's slow path).
    pieces.append(source[start:].rstrip("\n"))
    if any(piece.__class__ is str and ("{" in piece or "}" in piece or "\r" in piece) for piece in pieces):
        return None
    return tuple(piece for piece in pieces if piece != "")


def _substituting(pieces: tuple[str | _Value, ...], filters: Mapping[str, Mapping[str, Callable[..., Any]]],
                  render: Callable[[str, Mapping[str, Any]], str]) -> Callable[[str, Mapping[str, Any]], str]:
    def substitute(locale: str, context: Mapping[str, Any], _safe: Mapping[type, set[str]] = _SAFE_ATTRIBUTES,
                   _methods: frozenset[type] = _BOUND_METHODS, _type: type = type, _str: type = str) -> str:
        parts = []
        for piece in pieces:
            if piece.__class__ is _str:
                parts.append(piece)
                continue
            path, or_empty, name = piece
            try:
                value = context[path[0]]
                for attribute in path[1:]:
                    if attribute not in _safe[_type(value)]:  # judged before it is read: no getattr on trust
                        return render(locale, context)
                    value = getattr(value, attribute)
                    if _type(value) in _methods:
                        return render(locale, context)
                if name is not None:
                    function = filters[locale][name]
            except (KeyError, AttributeError):
                return render(locale, context)
            if or_empty:
                value = value or ""
            elif name is not None:
                value = function(value)
            if value is None:
                parts.append("")  # as _finalize_text
            elif value.__class__ is _str:  # one_line(value), its common case inline
                parts.append(value.strip() if value.isprintable() else one_line(value))
            else:
                return render(locale, context)
        text = "".join(parts)
        return text.strip() if text.isprintable() else one_line(text)

    return substitute


def template_context(*, customer: Any, rule_id: str, kind: str, locale: str, today: date, reason: str | None,
                     recommendation: str | None, importance: str = "normal", due_date: date | None = None,
                     window: int | None = None, unsubscribe_url: str | None = None,
                     email: Mapping[str, Any] | None = None, approval: Mapping[str, Any] | None = None,
                     params: Mapping[str, Any] | None = None, outcome_url: str | None = None) -> dict:
    """The variables every template may use (documented in templates/README.md)."""
    return {
        "customer": customer, "owner": customer.owner, "rule": {"id": rule_id, "kind": kind}, "locale": locale,
        "today": today, "reason": reason, "recommendation": recommendation, "importance": importance,
        "due_date": due_date, "window": window, "crm_url": customer.crm_url, "unsubscribe_url": unsubscribe_url,
        "email": email, "approval": approval, "params": params or {}, "outcome_url": outcome_url,
    }


def _html_attr(text: str) -> str:
    return str(jinja2.utils.markupsafe.escape(text))


def _is_locale(name: str) -> bool:
    return re.fullmatch(r"[a-z]{2}-[A-Z]{2}", name) is not None

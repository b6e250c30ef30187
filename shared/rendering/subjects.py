"""Only the subject line of a card or mail, rendered exactly as the full rendering makes it.

A preview that prints one line per action (`crmflow dry-run`) needs a card's `fallbackText` (its subject) and a
mail's subject part, not the whole card body or both mail bodies, which cost most of the rendering. Mail
subjects are the same template file the full rendering compiles, in the same environment. A card's fallbackText
is rendered alone as text when that gives the same string as the card leaf does — a plain line of text and
`{{ ... }}` values (the card leaf escapes markdown in values and un-escapes the leaf again, which cancels out);
a fallbackText with `{% ... %}` blocks, backslashes or line breaks is left to the full card rendering.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from shared.domain.vocabulary import TemplateKind
from shared.rendering.engine import MAX_SUBJECT_CHARS, Renderer

_Text = Callable[[str, Mapping[str, Any]], str]


class SubjectRenderer:
    """Subject lines of one Renderer's cards and mails. Build once per process, like the Renderer."""

    def __init__(self, renderer: Renderer):
        self.renderer = renderer
        # (locale, card) → ("const", value) | ("text", template) | ("card", None): render the whole card
        self._summaries: dict[tuple[str, str], tuple[str, Any]] = {}
        self._subjects: dict[tuple[str, str], _Text] = {}
        for locale in renderer.locales:
            folder = renderer.dir / locale
            for name in renderer.names[TemplateKind.CARD]:
                card = json.loads((folder / f"{name}.card.json").read_text(encoding="utf-8"))
                self._summaries[(locale, name)] = _summary(renderer, card.get("fallbackText"))
            for name in renderer.names[TemplateKind.EMAIL]:
                source = (folder / f"{name}.subject.txt").read_text(encoding="utf-8")
                self._subjects[(locale, name)] = renderer.compile_text(source)

    def card_summary(self, name: str, locale: str, context: Mapping[str, Any]) -> Any:
        """The card's fallbackText as `Renderer.card(...).get("fallbackText")` gives it, up to surrounding
        whitespace and line breaks (callers one-line it)."""
        form, value = self._summaries[(locale, name)]
        if form == "text":
            text = value(locale, context)
            if text:
                return text
            # Empty once one-lined: the card leaf may be "" or blanks, which callers tell apart ("" → a default).
        elif form == "const":
            return value
        return self.renderer.card(name, locale, context).get("fallbackText")

    def email_subject(self, name: str, locale: str, context: Mapping[str, Any]) -> str:
        """The mail's subject as `Renderer.email(...).subject` gives it."""
        return self._subjects[(locale, name)](locale, context)[:MAX_SUBJECT_CHARS]

    def card_reads(self, name: str, context: Callable[[str], Mapping[str, Any]]) -> set[str] | None:
        """The context variables the card's summary reads in any locale (None: the whole card is rendered)."""
        found: set[str] = set()
        for locale in self.renderer.locales:
            form, value = self._summaries[(locale, name)]
            if form == "card":
                return None
            if form == "text":
                found |= reads(value, locale, context(locale))
        return found

    def email_reads(self, name: str, context: Callable[[str], Mapping[str, Any]]) -> set[str]:
        """The context variables the mail's subject reads in any locale."""
        return set().union(*(reads(self._subjects[(locale, name)], locale, context(locale))
                             for locale in self.renderer.locales))


class _Recording(dict):
    """A template context that notes every name looked up in it. A compiled Jinja template looks up every name
    it uses (in any branch) before it renders anything, so one render with a full context finds them all."""

    def __init__(self, data: Mapping[str, Any]):
        super().__init__(data)
        self.names: set[str] = set()

    def __contains__(self, key: object) -> bool:
        self.names.add(str(key))
        return super().__contains__(key)

    def __getitem__(self, key: str) -> Any:
        self.names.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.names.add(key)
        return super().get(key, default)


def reads(text: _Text, locale: str, context: Mapping[str, Any]) -> set[str]:
    """The context variables a compiled text template (`Renderer.compile_text`) reads, found by rendering it once
    with `context` (a full sample context); a template that fails even on it counts as reading everything."""
    recording = _Recording(context)
    try:
        text(locale, recording)
    except Exception:  # a broken template is the loader's to report; here it simply needs everything
        return set(context)
    return recording.names


def _summary(renderer: Renderer, source: Any) -> tuple[str, Any]:
    if not isinstance(source, str) or ("{{" not in source and "{%" not in source):
        return "const", source  # the card holds it as written
    if "{%" in source or "\\" in source or not source.isprintable():
        return "card", None
    return "text", renderer.compile_text(source)

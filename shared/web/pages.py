"""HTML pages: Jinja templates under `shared/web/templates/`, autoescaped, rendered into a `Page`.

Every page the app serves (approval review, unsubscribe, dashboard) is a template extending `base.html`; what a
page says in each language sits beside the code that picks the page. Values are escaped by Jinja (autoescape is
on for every template), so a customer's name or a message body can never become markup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).parent / "templates"
LANGUAGES = ("ja", "en")


@dataclass(frozen=True)
class Page:
    """A rendered page: status code, HTML and the response headers it needs."""

    status: int
    html: str
    headers: Mapping[str, str] = field(default_factory=dict)


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(template: str, status: int = 200, headers: Mapping[str, str] | None = None, **context: Any) -> Page:
    """Render `template` with `context` (autoescaped) into a Page."""
    return Page(status, _environment().get_template(template).render(**context), dict(headers or {}))


def language(*candidates: str | None) -> str:
    """'ja' or 'en': the first candidate locale (ja-JP, en-US, an Accept-Language entry) in either; else Japanese,
    the app's default audience."""
    for candidate in candidates:
        code = (candidate or "").split(";")[0].strip()[:2].lower()
        if code in LANGUAGES:
            return code
    return "ja"

"""Unsubscribe links: verify the signed token, add the suppression, answer with a small localised page.

GET shows a confirmation page whose button POSTs back; POST (the RFC 8058 one-click request
`List-Unsubscribe=One-Click` from the mail client, or the button) adds the suppression. GET alone does not
unsubscribe: mail security scanners fetch every link in a mail, and would otherwise unsubscribe customers who never
asked to. Adding is idempotent: a second POST answers the same page.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

from shared.delivery.suppressions import SuppressionStore
from shared.domain.signing import UNSUBSCRIBE, verify

_TEXT = {
    "ja": {"title": "配信停止", "confirm": "今後のメール配信を停止しますか？", "button": "配信を停止する",
           "done": "配信停止を承りました。今後、このアドレスにご案内メールはお送りしません。",
           "invalid": "このリンクは無効か、有効期限が切れています。"},
    "en": {"title": "Unsubscribe", "confirm": "Stop receiving these emails?", "button": "Unsubscribe",
           "done": "You are unsubscribed. We will not send these emails to you again.",
           "invalid": "This link is invalid or has expired."},
}


@dataclass(frozen=True)
class Page:
    status: int
    html: str


def language(locale: str | None, accept_language: str | None) -> str:
    """'ja' or 'en': the customer's locale first, then the browser's preference."""
    for candidate in (locale, *(part.split(";")[0] for part in (accept_language or "").split(","))):
        if candidate and candidate.strip()[:2].lower() in _TEXT:
            return candidate.strip()[:2].lower()
    return "ja"


def _page(lang: str, body: str) -> str:
    title = html.escape(_TEXT[lang]["title"])
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title></head>'
            f'<body style="font-family:sans-serif;max-width:32rem;margin:3rem auto">'
            f"<h1>{title}</h1>{body}</body></html>")


def confirmation_page(settings, token: str, lang: str) -> Page:
    verify(settings, UNSUBSCRIBE, token)  # a bad or expired link fails here, before any button is shown
    text = _TEXT[lang]
    form = (f'<p>{html.escape(text["confirm"])}</p><form method="post" action="?token={html.escape(token)}">'
            f'<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            f'<button type="submit">{html.escape(text["button"])}</button></form>')
    return Page(200, _page(lang, form))


def unsubscribe(settings, suppressions: SuppressionStore, token: str, lang: str, source: str,
                address_of: Callable[[str], str | None] = lambda customer_id: None) -> Page:
    """Suppress the customer the link names and their address (`address_of(customer_id)`, stored as a digest):
    the same address under another customer record (a duplicate contact, another CRM) is not mailed either."""
    customer_id = verify(settings, UNSUBSCRIBE, token)
    suppressions.add_customer(customer_id, source)
    address = address_of(customer_id)
    if address and "@" in address:
        suppressions.add_email(address, source)
    return Page(200, _page(lang, f"<p>{html.escape(_TEXT[lang]['done'])}</p>"))


def invalid_link_page(status: int, lang: str) -> Page:
    return Page(status, _page(lang, f"<p>{html.escape(_TEXT[lang]['invalid'])}</p>"))


def customer_id_of(settings, token: str) -> str:
    return verify(settings, UNSUBSCRIBE, token)

"""The pages of `GET|POST /api/unsubscribe` (ja / en: the customer's locale, else the browser's)."""

from __future__ import annotations

from shared.web.pages import Page, render

_TEXT = {
    "ja": {"title": "配信停止", "confirm": "今後のメール配信を停止しますか？", "button": "配信を停止する",
           "done": "配信停止を承りました。今後、このアドレスにご案内メールはお送りしません。",
           "invalid": "このリンクは無効か、有効期限が切れています。"},
    "en": {"title": "Unsubscribe", "confirm": "Stop receiving these emails?", "button": "Unsubscribe",
           "done": "You are unsubscribed. We will not send these emails to you again.",
           "invalid": "This link is invalid or has expired."},
}
HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}


def confirmation_page(token: str, lang: str) -> Page:
    """The button that sends the one-click POST (shown only for a link that verified)."""
    text = _TEXT[lang]
    return render("unsubscribe_confirm.html", 200, HEADERS, lang=lang, title=text["title"], text=text, token=token)


def done_page(lang: str) -> Page:
    return render("base.html", 200, HEADERS, lang=lang, title=_TEXT[lang]["title"], message=_TEXT[lang]["done"])


def invalid_link_page(status: int, lang: str) -> Page:
    return render("base.html", status, HEADERS, lang=lang, title=_TEXT[lang]["title"], message=_TEXT[lang]["invalid"])

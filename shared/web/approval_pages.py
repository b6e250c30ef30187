"""The small localised HTML pages of `GET|POST /api/approvals/{id}` (ja / en by the customer's locale).

The review page shows exactly what will be sent: recipient (masked), subject, the plain text, and the HTML in a
sandboxed `srcdoc` iframe (no scripts, no forms, its own origin). The token travels in the URL the rep opened and in
the hidden form fields; the response headers keep it from leaking (no-referrer, no-store) and forbid framing the
buttons (clickjacking).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass

from shared.approvals.flow import APPROVE, APPROVED, EXPIRED, REJECT, REJECTED, Approval, mask_address

_TEXT = {
    "ja": {
        "title": "送信前の承認", "intro": "以下の内容を送信してよいか確認し、承認または却下してください。",
        "to": "宛先", "subject": "件名", "channel": "チャネル", "rule": "ルール", "expires": "有効期限",
        "text": "本文（テキスト）", "html": "本文（HTML）", "content": "内容",
        "approve": "承認して送信", "reject": "却下",
        "approved": "承認しました。営業時間内に送信されます。",
        "rejected": "却下しました。このメッセージは送信されません。",
        "already": {APPROVED: "この承認依頼はすでに承認済みです。", REJECTED: "この承認依頼はすでに却下されています。",
                    EXPIRED: "この承認依頼は有効期限が切れています。メッセージは送信されません。"},
        "invalid": "このリンクは無効です。", "missing": "この承認依頼は見つかりません。",
    },
    "en": {
        "title": "Approval before sending", "intro": "Check what will be sent, then approve or reject it.",
        "to": "To", "subject": "Subject", "channel": "Channel", "rule": "Rule", "expires": "Expires",
        "text": "Body (text)", "html": "Body (HTML)", "content": "Content",
        "approve": "Approve and send", "reject": "Reject",
        "approved": "Approved. It will be sent within business hours.",
        "rejected": "Rejected. This message will not be sent.",
        "already": {APPROVED: "This request was already approved.", REJECTED: "This request was already rejected.",
                    EXPIRED: "This request has expired. The message will not be sent."},
        "invalid": "This link is not valid.", "missing": "This approval request does not exist.",
    },
}

# The token is in the page's URL: never send it on as a Referer (images in the previewed mail), never cache the
# page, never let another site frame the buttons.
HEADERS = {
    "Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


@dataclass(frozen=True)
class Page:
    status: int
    html: str


def language(locale: str | None) -> str:
    """'ja' or 'en' from a locale such as ja-JP; Japanese when unknown (the app's default audience)."""
    return "en" if (locale or "").lower().startswith("en") else "ja"


def _page(lang: str, body: str) -> str:
    return layout(lang, _TEXT[lang]["title"], body)


def layout(lang: str, title: str, body: str) -> str:
    """The small self-contained page every link answers with (`body` is HTML the caller escaped)."""
    title = html.escape(title)
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            '<meta name="referrer" content="no-referrer">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>'
            "<style>body{font-family:sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}"
            "th{text-align:left;padding-right:1rem;vertical-align:top}pre{white-space:pre-wrap;background:#f6f6f6;"
            "padding:.75rem}iframe{width:100%;height:28rem;border:1px solid #ccc}"
            "form{display:inline-block;margin-right:1rem}button{font-size:1rem;padding:.5rem 1.5rem}</style>"
            f"</head><body><h1>{title}</h1>{body}</body></html>")


def review_page(approval: Approval, token: str, lang: str) -> Page:
    """What will be sent, with Approve / Reject buttons posting back with the token."""
    text = _TEXT[lang]
    message = approval.message
    e = html.escape
    rows = [(text["to"], mask_address(message.to)), (text["subject"], message.subject or ""),
            (text["channel"], message.channel), (text["rule"], approval.rule),
            (text["expires"], approval.expires_at.strftime("%Y-%m-%d %H:%M UTC"))]
    parts = [f"<p>{e(text['intro'])}</p><table>"]
    parts += [f"<tr><th>{e(label)}</th><td>{e(value)}</td></tr>" for label, value in rows]
    parts.append("</table>")
    content = message.content
    if message.channel == "email":
        parts.append(f"<h2>{e(text['text'])}</h2><pre>{e(content.get('text') or '')}</pre>")
        parts.append(f"<h2>{e(text['html'])}</h2>"
                     f'<iframe sandbox="" referrerpolicy="no-referrer" title="{e(text["html"])}" '
                     f'srcdoc="{e(content.get("html") or "", quote=True)}"></iframe>')
    else:
        shown = content.get("card") or content.get("description") or content
        body = shown if isinstance(shown, str) else json.dumps(shown, ensure_ascii=False, indent=2, default=str)
        parts.append(f"<h2>{e(text['content'])}</h2><pre>{e(body)}</pre>")
    action = f"/api/approvals/{e(approval.id)}"
    for decision, label in ((APPROVE, text["approve"]), (REJECT, text["reject"])):
        parts.append(f'<form method="post" action="{action}"><input type="hidden" name="token" value="{e(token)}">'
                     f'<input type="hidden" name="decision" value="{decision}">'
                     f'<button type="submit">{e(label)}</button></form>')
    return Page(200, _page(lang, "".join(parts)))


def decided_page(approval: Approval, lang: str) -> Page:
    key = "approved" if approval.status == APPROVED else "rejected"
    return Page(200, _page(lang, f"<p>{html.escape(_TEXT[lang][key])}</p>"))


def already_page(status: str, lang: str) -> Page:
    message = _TEXT[lang]["already"].get(status, _TEXT[lang]["already"][EXPIRED])
    return Page(409, _page(lang, f"<p>{html.escape(message)}</p>"))


def error_page(status: int, lang: str) -> Page:
    return Page(status, _page(lang, f"<p>{html.escape(_TEXT[lang]['missing' if status == 404 else 'invalid'])}</p>"))

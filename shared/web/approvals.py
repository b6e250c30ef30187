"""The small localised pages of `GET|POST /api/approvals/{id}` (ja / en by the customer's locale).

The review page shows exactly what will be sent: recipient (masked), subject, the plain text, and the HTML in a
sandboxed `srcdoc` iframe (no scripts, no forms, its own origin). The token travels in the URL the rep opened and in
the hidden form fields; the response headers keep it from leaking (no-referrer, no-store) and forbid framing the
buttons (clickjacking).
"""

from __future__ import annotations

import json

from shared.approvals.flow import Approval, mask_address
from shared.domain.vocabulary import ApprovalStatus, Channel, Decision
from shared.web.pages import Page, render

_TEXT = {
    "ja": {
        "title": "送信前の承認", "intro": "以下の内容を送信してよいか確認し、承認または却下してください。",
        "to": "宛先", "subject": "件名", "channel": "チャネル", "rule": "ルール", "expires": "有効期限",
        "text": "本文（テキスト）", "html": "本文（HTML）", "content": "内容",
        "approve": "承認して送信", "reject": "却下",
        "approved": "承認しました。営業時間内に送信されます。",
        "rejected": "却下しました。このメッセージは送信されません。",
        "already": {ApprovalStatus.APPROVED: "この承認依頼はすでに承認済みです。",
                    ApprovalStatus.REJECTED: "この承認依頼はすでに却下されています。",
                    ApprovalStatus.EXPIRED: "この承認依頼は有効期限が切れています。メッセージは送信されません。"},
        "invalid": "このリンクは無効です。", "missing": "この承認依頼は見つかりません。",
    },
    "en": {
        "title": "Approval before sending", "intro": "Check what will be sent, then approve or reject it.",
        "to": "To", "subject": "Subject", "channel": "Channel", "rule": "Rule", "expires": "Expires",
        "text": "Body (text)", "html": "Body (HTML)", "content": "Content",
        "approve": "Approve and send", "reject": "Reject",
        "approved": "Approved. It will be sent within business hours.",
        "rejected": "Rejected. This message will not be sent.",
        "already": {ApprovalStatus.APPROVED: "This request was already approved.",
                    ApprovalStatus.REJECTED: "This request was already rejected.",
                    ApprovalStatus.EXPIRED: "This request has expired. The message will not be sent."},
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


def _message_page(status: int, lang: str, message: str) -> Page:
    return render("approval.html", status, HEADERS, lang=lang, title=_TEXT[lang]["title"], message=message)


def review_page(approval: Approval, token: str, lang: str) -> Page:
    """What will be sent, with Approve / Reject buttons posting back with the token."""
    text = _TEXT[lang]
    message = approval.message
    rows = [(text["to"], mask_address(message.to)), (text["subject"], message.subject or ""),
            (text["channel"], message.channel), (text["rule"], approval.rule),
            (text["expires"], approval.expires_at.strftime("%Y-%m-%d %H:%M UTC"))]
    email, content = None, message.content
    if message.channel == Channel.EMAIL:
        email = {"text": content.get("text") or "", "html": content.get("html") or ""}
        shown = ""
    else:
        shown = content.get("card") or content.get("description") or content
        shown = shown if isinstance(shown, str) else json.dumps(shown, ensure_ascii=False, indent=2, default=str)
    return render("approval_review.html", 200, HEADERS, lang=lang, title=text["title"], text=text, rows=rows,
                  email=email, content=shown, approval_id=approval.id, token=token,
                  decisions=[(Decision.APPROVE, text["approve"]), (Decision.REJECT, text["reject"])])


def decided_page(approval: Approval, lang: str) -> Page:
    key = "approved" if approval.status == ApprovalStatus.APPROVED else "rejected"
    return _message_page(200, lang, _TEXT[lang][key])


def already_page(status: str, lang: str) -> Page:
    already = _TEXT[lang]["already"]
    return _message_page(409, lang, already.get(status, already[ApprovalStatus.EXPIRED]))


def error_page(status: int, lang: str) -> Page:
    return _message_page(status, lang, _TEXT[lang]["missing" if status == 404 else "invalid"])

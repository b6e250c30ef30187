"""The small localised page of `GET|POST /api/opportunities/{id}/outcome` (ja / en by the customer's locale).

The rep sees the opportunity (customer, rule, recommendation, current status and the last decision) and three
buttons posting back with the token: in progress, won (with an optional amount), not now. The decision the card's
button named (`decision=`) is highlighted. Same headers as the approval pages (no referrer, no caching, no framing).
"""

from __future__ import annotations

from shared.opportunities.ledger import CRM, Opportunity
from shared.opportunities.outcomes import NOT_NOW
from shared.web.approvals import HEADERS
from shared.web.pages import Page, language, render

__all__ = ["HEADERS", "Page", "closed_page", "error_page", "language", "outcome_page", "recorded_page"]

_TEXT = {
    "ja": {
        "title": "商談の結果", "intro": "この商談の状況を選んでください。", "customer": "顧客", "rule": "ルール",
        "recommendation": "推奨アクション", "status": "現在の状況", "last": "最終更新",
        "in_progress": "対応中", "won": "受注", "not_now": "今回は見送り", "amount": "受注金額（任意）",
        "recorded": {"in_progress": "「対応中」として記録しました。", "won": "「受注」として記録しました。",
                     "not_now": "「今回は見送り」として記録しました。"},
        "closed": "この商談はCRMの商談（{deal}）で{status}として確定しています。変更はCRMで行ってください。",
        "not_offered": "この商談は通知されていないため、結果を記録できません。",
        "invalid": "このリンクは無効です。", "missing": "この商談は見つかりません。",
        "bad": "入力内容を確認してください。",
        "statuses": {"won": "受注", "lost": "失注", "in_progress": "対応中"},
    },
    "en": {
        "title": "Opportunity outcome", "intro": "Tell us where this opportunity stands.", "customer": "Customer",
        "rule": "Rule", "recommendation": "Recommendation", "status": "Status", "last": "Last decision",
        "in_progress": "In progress", "won": "Won", "not_now": "Not now", "amount": "Amount won (optional)",
        "recorded": {"in_progress": "Recorded as in progress.", "won": "Recorded as won.",
                     "not_now": "Recorded as not now."},
        "closed": "The CRM closed this opportunity as {status} (deal {deal}). Change the deal in the CRM.",
        "not_offered": "This opportunity was never sent, so it has no outcome.",
        "invalid": "This link is not valid.", "missing": "This opportunity does not exist.",
        "bad": "Please check what you entered.",
        "statuses": {"won": "won", "lost": "lost", "in_progress": "in progress"},
    },
}


def outcome_page(opportunity: Opportunity, token: str, lang: str, customer_name: str | None,
                 preselected: str | None = None) -> Page:
    """The rep's answer page: what the opportunity is, and one button per decision posting back with the token."""
    text = _TEXT[lang]
    rows = [(text["customer"], customer_name or opportunity.customer_id), (text["rule"], opportunity.rule),
            (text["recommendation"], opportunity.recommendation or ""),
            (text["status"], text["statuses"].get(opportunity.status, opportunity.status))]
    if opportunity.decided_at:
        rows.append((text["last"], f"{opportunity.decision or opportunity.status} "
                                   f"({opportunity.outcome_source}, {opportunity.decided_at:%Y-%m-%d %H:%M} UTC)"))
    choices = [{"decision": decision, "label": text[decision], "marked": decision == preselected,
                "amount": text["amount"] if decision == "won" else None}
               for decision in ("in_progress", "won", NOT_NOW)]
    return render("outcome.html", 200, HEADERS, lang=lang, title=text["title"], intro=text["intro"], rows=rows,
                  choices=choices, token=token, action=f"/api/opportunities/{opportunity.id}/outcome")


def _message(status: int, lang: str, message: str) -> Page:
    return render("outcome.html", status, HEADERS, lang=lang, title=_TEXT[lang]["title"], rows=[], message=message)


def recorded_page(decision: str, lang: str) -> Page:
    return _message(200, lang, _TEXT[lang]["recorded"][decision])


def closed_page(opportunity: Opportunity | None, lang: str) -> Page:
    text = _TEXT[lang]
    if opportunity is not None and opportunity.outcome_source == CRM:
        message = text["closed"].format(status=text["statuses"].get(opportunity.status, opportunity.status),
                                        deal=opportunity.deal_id or "")
    else:
        message = text["not_offered"]
    return _message(409, lang, message)


def error_page(status: int, lang: str) -> Page:
    key = {404: "missing", 400: "bad"}.get(status, "invalid")
    return _message(status, lang, _TEXT[lang][key])

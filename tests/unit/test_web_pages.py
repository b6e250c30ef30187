"""shared/web: every page is an autoescaped Jinja template, in the customer's language, with its own headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.approvals.flow import Approval
from shared.broker.outbound import queued
from shared.domain.messages import ActionMessage
from shared.domain.vocabulary import ApprovalStatus
from shared.web import approvals, unsubscribe
from shared.web.pages import TEMPLATES, language, render

NOW = datetime(2026, 11, 24, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>'


def held_approval(channel: str = "email", **content) -> Approval:
    message = ActionMessage(dedupe_key="r:C-1:2026.a0", channel=channel, rule="r", kind="lifecycle",
                            customer_id="C-1", to="taro@example.co.jp", subject=HOSTILE, content=content,
                            planned_at=NOW)
    return Approval(id="ap1", status=ApprovalStatus.PENDING, action_key=message.dedupe_key, firing_key="r:C-1:2026",
                    rule="r", kind="lifecycle", customer_id="C-1", held=queued(message), approver="rep@contoso.com",
                    created_at=NOW, expires_at=NOW + timedelta(days=7))


@pytest.mark.parametrize(("candidates", "lang"), [
    (("en-US",), "en"), (("ja-JP",), "ja"), (("fr-FR",), "ja"), ((None, "fr", "en;q=0.8"), "en"), ((), "ja")])
def test_language_is_the_first_known_candidate(candidates, lang):
    assert language(*candidates) == lang


def test_review_page_escapes_the_message_and_keeps_the_html_sandboxed():
    page = approvals.review_page(held_approval(text=HOSTILE, html=f"<p>hi</p>{HOSTILE}"), 'tok"en', "en")
    assert page.status == 200 and page.headers["X-Frame-Options"] == "DENY"
    assert "<script>" not in page.html and "&lt;script&gt;" in page.html
    assert '<iframe sandbox=""' in page.html and "srcdoc=\"&lt;p&gt;hi&lt;/p&gt;" in page.html
    assert 'value="tok&#34;en"' in page.html and "t***@example.co.jp" in page.html and "taro@" not in page.html
    assert page.html.count("<form") == 2 and 'value="approve"' in page.html and 'value="reject"' in page.html


def test_card_approvals_show_the_card_as_text():
    page = approvals.review_page(held_approval("teams", card={"body": HOSTILE}), "t", "ja")
    assert '<html lang="ja">' in page.html and "内容" in page.html and "&lt;script&gt;" in page.html


def test_message_pages_carry_status_and_headers():
    assert approvals.already_page(ApprovalStatus.REJECTED, "en").status == 409
    assert "already rejected" in approvals.already_page(ApprovalStatus.REJECTED, "en").html
    invalid = unsubscribe.invalid_link_page(401, "ja")
    assert invalid.status == 401 and invalid.headers == unsubscribe.HEADERS and "無効" in invalid.html
    confirm = unsubscribe.confirmation_page("a&b", "en")
    assert 'action="?token=a&amp;b"' in confirm.html and "List-Unsubscribe" in confirm.html


def test_templates_autoescape_and_live_beside_the_pages():
    assert {"base.html", "approval_review.html", "unsubscribe_confirm.html", "dashboard.html"} <= {
        path.name for path in TEMPLATES.glob("*.html")}
    page = render("base.html", lang="en", title="<b>", message="<i>")
    assert "&lt;b&gt;" in page.html and "&lt;i&gt;" in page.html and "<i>" not in page.html

"""MIME and Adaptive Card content built for Graph, the bot, webhooks and the outbox."""

from __future__ import annotations

import json
from email import message_from_bytes
from email.policy import default

import pytest

from shared.delivery.content import CARD_LIMIT_BYTES, build_mime, fit_card, webhook_payload
from shared.delivery.http import retry_after_seconds
from shared.domain.errors import InvalidInput
from tests.delivery_support import MAILBOX, action


def test_mail_is_multipart_alternative_with_one_click_unsubscribe_and_the_dedupe_stamp():
    mail = message_from_bytes(build_mime(action(), MAILBOX).as_bytes(), policy=default)
    assert mail.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in mail.iter_parts()]
    assert parts == ["text/plain", "text/html"]  # the last alternative is the preferred one
    assert mail["List-Unsubscribe"] == "<https://crmflow.example/api/unsubscribe?token=abc>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["X-Crmflow-Dedupe"] == "renewal:C-001:90"
    assert mail["Subject"] == "ご契約更新のご案内"
    assert mail["Message-ID"].endswith("@contoso.example>")
    assert "ご契約更新のご案内" in mail.get_body(("html",)).get_content()


def test_mail_without_any_body_is_rejected():
    with pytest.raises(InvalidInput):
        build_mime(action(html="", text=""), MAILBOX)


def test_small_card_is_untouched():
    card = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "x"}]}
    assert fit_card(card) is card


def test_large_card_is_trimmed_under_28kb_and_stays_a_valid_card():
    facts = [{"title": f"製品{i}", "value": "説明" * 40} for i in range(400)]
    card = {"type": "AdaptiveCard", "version": "1.5",
            "body": [{"type": "TextBlock", "text": "機会", "weight": "Bolder"}, {"type": "FactSet", "facts": facts}],
            "actions": [{"type": "Action.OpenUrl", "title": "CRM", "url": "https://crm.example/records/C-001"}]}
    fitted = fit_card(card)
    size = len(json.dumps(fitted, ensure_ascii=False, separators=(",", ":")).encode())
    assert size <= CARD_LIMIT_BYTES
    assert fitted["body"][0]["text"] == "機会"  # the heading survives; the long list lost items from its end
    kept = next(block for block in fitted["body"] if block.get("type") == "FactSet")["facts"]
    assert 0 < len(kept) < 400 and kept[0] == facts[0]
    assert fitted["actions"] == card["actions"]
    assert len(card["body"][1]["facts"]) == 400  # the original is not modified
    payload = webhook_payload(action("teams", to="channel:sales", card=card))
    assert payload["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"


@pytest.mark.parametrize(("value", "expected"), [("7", 7.0), ("0.25", 0.25), (None, 30.0), ("garbage", 30.0)])
def test_retry_after_parses_delta_seconds(value, expected):
    assert retry_after_seconds(value) == expected


def test_retry_after_parses_an_http_date():
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: go now

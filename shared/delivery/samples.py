"""Sample deliveries for `crmflow demo`: one customer mail and its rep FYI card, through the configured transport
(the local outbox by default), so the demo ends with files a person can open."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.container import Container
from shared.messages import ActionMessage
from shared.names import TEAMS


def sample_messages(now: datetime | None = None) -> list[ActionMessage]:
    planned = now or datetime.now(UTC)
    card = {"type": "AdaptiveCard", "version": "1.5", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "body": [{"type": "TextBlock", "text": "更新案内メールを送信しました", "weight": "Bolder", "wrap": True},
                     {"type": "FactSet", "facts": [{"title": "顧客", "value": "C-001"},
                                                   {"title": "契約終了", "value": "2026-02-15"}]}],
            "actions": [{"type": "Action.OpenUrl", "title": "CRMで開く", "url": "https://crm.example/records/C-001"}]}
    fyi = ActionMessage(dedupe_key="demo:renewal:C-001:fyi", channel="teams", rule="renewal-reminder",
                        kind="lifecycle", customer_id="C-001", to="hanako@contoso.com", subject="更新案内を送信",
                        content={"card": card, "summary": "更新案内メールを送信しました", "aad_object_id": None},
                        planned_at=planned)
    mail = ActionMessage(
        dedupe_key="demo:renewal:C-001", channel="email", rule="renewal-reminder", kind="lifecycle",
        customer_id="C-001", to="taro@example.co.jp", subject="【ご案内】ご契約更新のお知らせ",
        content={"html": "<p>山田 太郎 様</p><p>ご契約は 2026-02-15 に終了します。更新のご案内をお送りします。</p>",
                 "text": "山田 太郎 様\n\nご契約は 2026-02-15 に終了します。更新のご案内をお送りします。",
                 "locale": "ja-JP", "unsubscribe_url": None},
        planned_at=planned, followups=(fyi.to_json(),))
    return [mail]


def deliver_samples(container: Container) -> list[str]:
    """Deliver the samples, then the follow-ups they released; returns one line per outcome."""
    lines = []
    for message in sample_messages():
        outcome = container.delivery.deliver(message)
        lines.append(f"{message.channel:<6} {outcome.status:<10} {outcome.reference or ''}")
    for received in container.broker.receive(TEAMS, max_messages=10):
        outcome = container.delivery.deliver(ActionMessage.from_json(received.body))
        container.broker.complete(received)
        lines.append(f"teams  {outcome.status:<10} {outcome.reference or ''}")
    return lines

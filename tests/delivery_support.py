"""Helpers for delivery tests: a controllable clock, action messages, and a live stack on the stand-ins."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from shared.broker.local import LocalBroker
from shared.container import Container
from shared.domain.messages import ActionMessage
from tests.conftest import make_settings
from tests.standins import BotStandIn, GraphStandIn, TokenIssuer, TokenStandIn, WebhookStandIn, self_signed_tls

MAILBOX = "crm-notify@contoso.example"
REP = "hanako@contoso.example"
REP_OBJECT_ID = "00000000-0000-0000-0000-00000000a001"
CUSTOMER_EMAIL = "taro@example.co.jp"
SIGNING_KEY = "test-signing-key-not-a-secret"


class ShiftClock:
    """Real time plus an offset the test can advance (scheduled copies become visible without sleeping)."""

    def __init__(self):
        self.shift = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift

    def advance(self, seconds: float) -> None:
        self.shift += seconds


def action(channel: str = "email", *, key: str = "renewal:C-001:90", to: str = CUSTOMER_EMAIL,
           followups: tuple[str, ...] = (), **content) -> ActionMessage:
    if channel == "email":
        body = {"html": "<p>ご契約更新のご案内</p>", "text": "ご契約更新のご案内", "locale": "ja-JP",
                "unsubscribe_url": "https://crmflow.example/api/unsubscribe?token=abc"}
    else:
        body = {"card": {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "機会"}]},
                "summary": "クロスセル機会", "aad_object_id": None}
    body.update(content)
    return ActionMessage(dedupe_key=key, channel=channel, rule="renewal-reminder", kind="lifecycle",
                         customer_id="C-001", to=to, subject="ご契約更新のご案内", content=body,
                         planned_at=datetime(2026, 1, 5, 0, 0, tzinfo=UTC), followups=followups,
                         properties={"firing_key": "renewal-reminder:C-001:90"})


@dataclass
class LiveStack:
    container: Container
    clock: ShiftClock
    issuer: TokenIssuer
    token: TokenStandIn
    graph: GraphStandIn
    bot: BotStandIn
    webhook: WebhookStandIn
    broker: LocalBroker

    def due(self, queue: str) -> list[ActionMessage]:
        """Complete and return every message now visible on a queue (what the trigger would be handed)."""
        found = []
        for received in self.broker.receive(queue, max_messages=100):
            self.broker.complete(received)
            found.append(ActionMessage.from_json(received.body))
        return found


@contextlib.contextmanager
def live_stack(azurite, tmp_path: Path, *, mail_limit: int = 30, mail_window: float = 60.0,
               **env: str) -> Iterator[LiveStack]:
    issuer = TokenIssuer()
    tls, ca = self_signed_tls(tmp_path / "tls")
    clients = {"graph-app": "graph-secret", "bot-app": "bot-secret"}
    with TokenStandIn(issuer, tls, clients) as token, \
            GraphStandIn(issuer, users={REP: REP_OBJECT_ID}, limit=mail_limit, window=mail_window) as graph, \
            BotStandIn(issuer) as bot, WebhookStandIn() as webhook:
        # Generous pacing unless a test asks for the real limit (pacing has its own tests).
        env = {"MAIL_MESSAGES_PER_MINUTE": "6000", **env}
        settings = make_settings(
            tmp_path, TABLES_CONNECTION_STRING=azurite.connection_string, DELIVERY_TRANSPORT="live",
            AUTHORITY_HOST=token.url, GRAPH_BASE_URL=graph.url, BOT_SERVICE_URL=bot.url,
            GRAPH_TENANT_ID="tenant-1", GRAPH_CLIENT_ID="graph-app", GRAPH_CLIENT_SECRET="graph-secret",
            BOT_APP_ID="bot-app", BOT_APP_SECRET="bot-secret", BOT_TENANT_ID="tenant-1", MAIL_SENDER=MAILBOX,
            TEAMS_CHANNEL_WEBHOOKS=json.dumps({"sales": webhook.url_for("sales")}),
            UNSUBSCRIBE_SIGNING_KEY=SIGNING_KEY, **env)
        container = Container(settings)
        container.tables.ensure_tables()
        clock = ShiftClock()
        broker = LocalBroker(settings.local_dir / "broker.sqlite3", clock=clock)
        container.__dict__.update(clock=clock, broker=broker, http_timeout=(2.0, 1.0))
        container.http_session.verify = str(ca)
        container.http_session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides `verify`
        try:
            yield LiveStack(container, clock, issuer, token, graph, bot, webhook, broker)
        finally:
            broker.close()

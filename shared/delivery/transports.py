"""Transports: how one rendered ActionMessage leaves the building.

`Transport` is the port the delivery service calls: `budgets(message)` names the rate limits a send must fit into,
`send(message, uncertain=...)` sends once and returns a `SendResult`. `uncertain=True` means an earlier attempt may
have gone out (timeout, reset, crash after the request): a transport that can look (Graph Sent Items) looks first.

Live: `GraphMailTransport` (Outlook, shared mailbox), `TeamsTransport` (bot 1:1 proactive message, or a Workflows
webhook for `channel:<name>`). Local: `OutboxTransport` writes the exact bytes it would send under `.local/outbox/`.
"""

from __future__ import annotations

import base64
import json
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from shared.delivery.content import build_mime, teams_activity, webhook_payload
from shared.delivery.http import ApiClient
from shared.delivery.ratelimit import Budget
from shared.domain.errors import ConfigError, InvalidInput, Location, NotFound
from shared.domain.messages import ActionMessage
from shared.domain.vocabulary import BudgetKind, Channel
from shared.settings import Settings
from shared.storage.backend import Table
from shared.storage.keys import digest, email_digest

log = logging.getLogger(__name__)

# Single-value extended property stamped on every mail (a named string property in our own GUID namespace).
DEDUPE_PROPERTY = "String {6c1d2a59-8f0e-4b7e-9a3c-2f4b5d8e7a10} Name CrmflowDedupeKey"
CHANNEL_PREFIX = "channel:"


@dataclass(frozen=True)
class SendResult:
    transport: str
    reference: str | None = None  # Graph message id, bot activity id, outbox file name
    found_existing: bool = False  # an uncertain earlier attempt had in fact gone out


class Transport(ABC):
    name: str = "transport"
    # Seconds an uncertain attempt (timeout, reset: it may have been carried out) needs to become visible to the
    # look-up `send(uncertain=True)` makes; the sender reschedules the retry at least this far ahead.
    settle_seconds: float = 0.0

    def budgets(self, message: ActionMessage) -> list[Budget]:
        """Rate limits this send must fit into (none for the outbox)."""
        return []

    @abstractmethod
    def send(self, message: ActionMessage, *, uncertain: bool = False) -> SendResult: ...


# --- Outlook through Graph ----------------------------------------------------------------------------------
class GraphMailTransport(Transport):
    """Sends from the shared mailbox: create the draft from MIME, stamp it with the dedupe key (extended property),
    send it (202 = accepted). When the outcome of an earlier attempt is uncertain, Sent Items and the Outbox (where an
    accepted mail waits until Exchange has sent it) are searched for the stamp first, and a stamped draft left behind
    is sent instead of creating a second one. An uncertain retry waits `MAIL_SEND_SETTLE_SECONDS` first."""

    name = "graph"

    def __init__(self, api: ApiClient, *, graph_base_url: str, mailbox: str, settings: Settings):
        if not mailbox:
            raise ConfigError("app setting MAIL_SENDER is required for DELIVERY_TRANSPORT=live")
        self.api = api
        self.mailbox = mailbox
        self.base = f"{graph_base_url}/users/{quote(mailbox)}"
        self.settings = settings
        self.settle_seconds = float(settings.mail_send_settle_seconds)

    def budgets(self, message: ActionMessage) -> list[Budget]:
        s = self.settings
        return [
            Budget(BudgetKind.WINDOW, f"mailbox-recipients:{self.mailbox}", s.mail_recipients_per_day, 86400.0,
                   cost=len(_recipients(message.to))),
            Budget(BudgetKind.RATE, f"mailbox:{self.mailbox}", s.mail_messages_per_minute, 60.0),
            Budget(BudgetKind.CONCURRENCY, f"mailbox-requests:{self.mailbox}", s.mail_concurrent_requests, 60.0),
        ]

    def send(self, message: ActionMessage, *, uncertain: bool = False) -> SendResult:
        key = message.dedupe_key
        if uncertain:
            for folder in ("sentitems", "outbox"):  # accepted: already sent, or waiting in the Outbox to be
                sent = self._find(folder, key)
                if sent:
                    return SendResult(self.name, sent, found_existing=True)
            draft = self._find("drafts", key)
            if draft:
                self._send_draft(draft)
                return SendResult(self.name, draft)
        mime = build_mime(message, self.mailbox).as_bytes()
        created = self.api.request("POST", f"{self.base}/messages", data=base64.b64encode(mime),
                                   headers={"Content-Type": "text/plain"})
        draft_id = created.json()["id"]
        self.api.request("PATCH", f"{self.base}/messages/{quote(draft_id)}",
                         json={"singleValueExtendedProperties": [{"id": DEDUPE_PROPERTY, "value": key}]})
        self._send_draft(draft_id)
        return SendResult(self.name, draft_id)

    def _send_draft(self, draft_id: str) -> None:
        self.api.request("POST", f"{self.base}/messages/{quote(draft_id)}/send", ok=(202,))

    def _find(self, folder: str, key: str) -> str | None:
        escaped = key.replace("'", "''")
        response = self.api.request("GET", f"{self.base}/mailFolders/{folder}/messages", params={
            "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{DEDUPE_PROPERTY}' and ep/value eq "
                       f"'{escaped}')",
            "$select": "id", "$top": "1"})
        found = response.json().get("value") or []
        return found[0]["id"] if found else None


def _recipients(to: str) -> list[str]:
    return [part.strip() for part in to.replace(";", ",").split(",") if part.strip()]


# --- Teams: bot proactive 1:1 and Workflows webhooks -----------------------------------------------------------
class DirectoryCache:
    """Rep AAD object ids (by email digest) and bot conversation ids (by object id) in the `Deliveries` table, so a
    rep costs one Graph lookup and one conversation creation, ever."""

    def __init__(self, table: Table):
        self.table = table

    def get(self, kind: str, key: str) -> str | None:
        found = self.table.get(kind, email_digest(key))
        return found.get("value") if found is not None else None

    def put(self, kind: str, key: str, value: str) -> None:
        self.table.upsert({"PartitionKey": kind, "RowKey": email_digest(key), "value": value})


class TeamsTransport(Transport):
    """`to` = rep email → bot 1:1 (object id from the message, the cache, or Graph `/users/{email}`);
    `to` = `channel:<name>` → the channel's Workflows webhook."""

    name = "teams"

    def __init__(self, *, bot: ApiClient, graph: ApiClient | None, webhook: ApiClient, directory: DirectoryCache,
                 settings: Settings):
        self.bot = bot
        self.graph = graph
        self.webhook = webhook
        self.directory = directory
        self.settings = settings

    def budgets(self, message: ActionMessage) -> list[Budget]:
        s = self.settings
        if message.to.startswith(CHANNEL_PREFIX):
            return [Budget(BudgetKind.RATE, f"webhook:{message.to}", s.webhook_posts_per_second, 1.0)]
        # Per conversation = per rep (one 1:1 conversation each); keyed by the address digest.
        return [Budget(BudgetKind.RATE, f"bot-tenant:{s.bot_tenant_id}", s.bot_requests_per_second, 1.0),
                Budget(BudgetKind.RATE, f"bot-conversation:{email_digest(message.to)}",
                       s.bot_sends_per_second_per_conversation, 1.0)]

    def send(self, message: ActionMessage, *, uncertain: bool = False) -> SendResult:
        # Bot Connector and webhooks have no "did it arrive?" query: a retry after an uncertain outcome may show
        # the card twice. Accepted: a repeated FYI card is harmless, a lost one is not.
        if message.to.startswith(CHANNEL_PREFIX):
            return self._post_channel(message)
        return self._post_direct(message)

    def _post_channel(self, message: ActionMessage) -> SendResult:
        name = message.to[len(CHANNEL_PREFIX):]
        url = self.settings.teams_channel_webhooks.get(name)
        if not url:
            raise InvalidInput(f"no Workflows webhook configured for Teams channel {name!r}",
                               Location(field="TEAMS_CHANNEL_WEBHOOKS"))
        self.webhook.request("POST", url, json=webhook_payload(message))
        return SendResult(self.name, f"channel:{name}")

    def _post_direct(self, message: ActionMessage) -> SendResult:
        s = self.settings
        if not (s.bot_app_id and s.bot_tenant_id):
            raise ConfigError("app settings BOT_APP_ID and BOT_TENANT_ID are required for Teams 1:1 messages")
        activity = teams_activity(message)  # validates the card before any lookup
        object_id = message.content.get("aad_object_id") or self._object_id(message.to)
        conversation = self.directory.get("botconv", object_id)
        if conversation is None:
            created = self.bot.request("POST", f"{s.bot_service_url}/v3/conversations", json={
                "bot": {"id": f"28:{s.bot_app_id}"}, "isGroup": False, "members": [{"id": object_id}],
                "tenantId": s.bot_tenant_id, "channelData": {"tenant": {"id": s.bot_tenant_id}}})
            conversation = created.json()["id"]
            self.directory.put("botconv", object_id, conversation)
        posted = self.bot.request("POST", f"{s.bot_service_url}/v3/conversations/{quote(conversation)}/activities",
                                  json=activity)
        return SendResult(self.name, _json(posted).get("id"))

    def _object_id(self, email: str) -> str:
        cached = self.directory.get("aadid", email)
        if cached:
            return cached
        if self.graph is None:
            raise ConfigError("a Graph client is required to look reps up by email")
        try:
            found = self.graph.request("GET", f"{self.settings.graph_base_url}/users/{quote(email)}",
                                       params={"$select": "id"})
        except NotFound:
            raise NotFound("the rep's address is not a user in the tenant") from None
        object_id = found.json()["id"]
        self.directory.put("aadid", email, object_id)
        return object_id


def _json(response: Any) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


# --- the local outbox -------------------------------------------------------------------------------------------
class OutboxTransport(Transport):
    """Writes what would be sent: `.eml` (multipart/alternative) for mail, the exact Teams JSON (bot activity or
    webhook body) for Teams, under `<LOCAL_DIR>/outbox/`. File names derive from the dedupe key, so a repeat
    overwrites instead of duplicating."""

    name = "outbox"

    def __init__(self, directory: Path, sender: str | None):
        self.directory = directory
        self.sender = sender or "crm-notify@localhost"

    def send(self, message: ActionMessage, *, uncertain: bool = False) -> SendResult:
        stamp = message.planned_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
        stem = f"{stamp}-{digest(message.dedupe_key)[:16]}"
        if message.channel == Channel.EMAIL:
            path = self.directory / "email" / f"{stem}.eml"
            data = build_mime(message, self.sender).as_bytes()
        elif message.channel == Channel.TEAMS:
            path = self.directory / "teams" / f"{stem}.json"
            channel = message.to.startswith(CHANNEL_PREFIX)
            payload = webhook_payload(message) if channel else teams_activity(message)
            data = json.dumps({"via": "workflows-webhook" if channel else "bot-proactive", "to": message.to,
                               "dedupe_key": message.dedupe_key, "written_at": datetime.now(UTC).isoformat(),
                               "payload": payload}, ensure_ascii=False, indent=2).encode("utf-8")
        else:
            raise InvalidInput(f"the outbox does not deliver {message.channel!r} actions", Location(field="channel"))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: a reader never sees half a file
        return SendResult(self.name, str(path.relative_to(self.directory)))


def list_outbox(directory: Path) -> list[dict[str, Any]]:
    """Files in the outbox, oldest first: channel, path, size and (for mail) the subject."""
    from email import message_from_bytes
    from email.policy import default

    rows = []
    for path in sorted(directory.glob("*/*")):
        if path.suffix not in (".eml", ".json"):
            continue
        row: dict[str, Any] = {"channel": path.parent.name, "path": str(path), "bytes": path.stat().st_size}
        if path.suffix == ".eml":
            row["subject"] = str(message_from_bytes(path.read_bytes(), policy=default)["Subject"] or "")
        else:
            row["subject"] = json.loads(path.read_text(encoding="utf-8")).get("payload", {}).get("summary", "")
        rows.append(row)
    return rows

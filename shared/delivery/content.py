"""What goes on the wire, built the same way for the live transports and the local outbox.

- `build_mime`: the customer mail as RFC 5322 MIME, multipart/alternative (plain text first, HTML last), with the
  dedupe key in `X-Crmflow-Dedupe` and a Message-ID derived from it, and the unsubscribe link in List-Unsubscribe
  plus `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058). Graph's JSON message format allows only
  `x-` custom headers (at most 5) and a single body type, so the live sender hands Graph this MIME (base64) instead.
- `fit_card`: an Adaptive Card 1.5 kept under the 28 KB Teams limit by trimming long lists, never by cutting JSON.
- `teams_activity` / `webhook_payload`: the Bot Connector activity and the Workflows webhook body.
"""

from __future__ import annotations

import copy
import hashlib
import json
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime
from typing import Any

from shared.domain.errors import InvalidInput, Location, PayloadTooLarge
from shared.domain.messages import ActionMessage

CARD_LIMIT_BYTES = 28 * 1024
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
_TRIM_NOTE = {"type": "TextBlock", "text": "…", "isSubtle": True, "wrap": True}


class _MailPolicy(EmailPolicy):
    """SMTP policy (CRLF, folded headers, encoded words for non-ASCII), except for the RFC 2369 / RFC 8058 list
    headers: mail clients look for the raw `<https://...>` form there, and the default folding turns a long URL into
    RFC 2047 encoded words, which no client reads as a link (so no one-click unsubscribe is offered)."""

    RAW_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post"})

    def fold(self, name: str, value: Any) -> str:
        if name.lower() in self.RAW_HEADERS:
            return f"{name}: {_raw_header_value(name, value)}{self.linesep}"
        return super().fold(name, value)

    def fold_binary(self, name: str, value: Any) -> bytes:
        if name.lower() in self.RAW_HEADERS:
            return f"{name}: {_raw_header_value(name, value)}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


def _raw_header_value(name: str, value: Any) -> str:
    text = str(value)
    if not text.isascii() or not text.isprintable() or len(name) + 2 + len(text) > MAX_HEADER_LINE:
        raise InvalidInput(f"{name} must be printable ASCII of at most {MAX_HEADER_LINE} characters per line",
                           Location(field="content.unsubscribe_url"))
    return text


MAX_HEADER_LINE = 998  # RFC 5322 2.1.1
MAIL_POLICY = _MailPolicy(linesep="\r\n")


def message_id_for(dedupe_key: str, sender: str) -> str:
    domain = sender.rsplit("@", 1)[-1] if "@" in sender else "crmflow.local"
    return f"<{hashlib.sha256(dedupe_key.encode('utf-8')).hexdigest()[:32]}.crmflow@{domain}>"


def build_mime(message: ActionMessage, sender: str) -> EmailMessage:
    """The customer mail of an email ActionMessage (content: html, text, locale, unsubscribe_url)."""
    content = message.content
    html, text = content.get("html"), content.get("text")
    if not html and not text:
        raise InvalidInput("email has neither html nor text", Location(field="content"))
    mail = EmailMessage(policy=MAIL_POLICY)
    mail["From"] = Address(addr_spec=sender)
    mail["To"] = message.to
    mail["Subject"] = message.subject or ""
    mail["Date"] = format_datetime(message.planned_at)
    mail["Message-ID"] = message_id_for(message.dedupe_key, sender)
    if content.get("locale"):
        mail["Content-Language"] = str(content["locale"])
    if message.importance == "high":
        mail["Importance"] = "high"
    mail["X-Crmflow-Dedupe"] = message.dedupe_key
    unsubscribe = content.get("unsubscribe_url")
    if unsubscribe:
        mail["List-Unsubscribe"] = f"<{unsubscribe}>"
        mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    mail.set_content(text or "", subtype="plain", charset="utf-8")
    if html:
        mail.add_alternative(html, subtype="html", charset="utf-8")
    return mail


def _size(card: Any) -> int:
    return len(json.dumps(card, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def _longest_list(node: Any, path: tuple = ()) -> tuple[tuple, int] | None:
    """Path and length of the longest trimmable list (card body, containers, facts, columns)."""
    best: tuple[tuple, int] | None = None
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, list) and key in ("body", "items", "facts", "columns", "actions") and len(value) > 1:
                candidate = ((*path, key), len(value))
                if best is None or candidate[1] > best[1]:
                    best = candidate
            found = _longest_list(value, (*path, key))
            if found and (best is None or found[1] > best[1]):
                best = found
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found = _longest_list(value, (*path, index))
            if found and (best is None or found[1] > best[1]):
                best = found
    return best


def fit_card(card: dict[str, Any], limit: int = CARD_LIMIT_BYTES) -> dict[str, Any]:
    """The card itself when it fits; else a copy whose longest lists lose items from the end (with a "…" note)."""
    if _size(card) <= limit:
        return card
    trimmed = copy.deepcopy(card)
    while _size(trimmed) > limit:
        found = _longest_list(trimmed)
        if found is None:
            raise PayloadTooLarge(f"Adaptive Card is {_size(trimmed):,} bytes and has no list left to trim "
                                  f"(limit {limit:,})")
        path, _ = found
        parent: Any = trimmed
        for step in path[:-1]:
            parent = parent[step]
        items = parent[path[-1]]
        marker_present = bool(items) and items[-1] == _TRIM_NOTE
        keep = items[:-1] if marker_present else items
        # Drop about a quarter at a time (at least one item) so large cards converge quickly.
        drop = max(1, len(keep) // 4)
        keep = keep[:-drop]
        parent[path[-1]] = ([*keep, _TRIM_NOTE]) if path[-1] in ("body", "items") else keep
        if not keep and path[-1] not in ("body", "items"):
            parent.pop(path[-1])
    return trimmed


def teams_card(message: ActionMessage) -> dict[str, Any]:
    card = message.content.get("card")
    if not isinstance(card, dict):
        raise InvalidInput("teams message has no Adaptive Card", Location(field="content.card"))
    return fit_card(card)


def teams_activity(message: ActionMessage) -> dict[str, Any]:
    """The Bot Connector activity for a 1:1 proactive message."""
    return {"type": "message", "summary": message.content.get("summary") or message.subject or "",
            "attachments": [{"contentType": CARD_CONTENT_TYPE, "content": teams_card(message)}]}


def webhook_payload(message: ActionMessage) -> dict[str, Any]:
    """The Teams Workflows webhook body (DESIGN: type message + one adaptive card attachment)."""
    return {"type": "message",
            "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": teams_card(message)}]}

"""Microsoft Graph stand-in: drafts from MIME, PATCH extended properties, send, sendMail, folder queries by the
dedupe property, user lookup — with the mailbox send limit enforced (429 + Retry-After) and every 429 checked.

As in Exchange, an accepted send (202) first puts the mail in the Outbox; it moves to Sent Items `outbox_delay`
seconds later. `transmitted()` lists every mail that left (Outbox or Sent Items): what the recipients get."""

from __future__ import annotations

import base64
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default

from tests.standins.base import Request, Response, StandIn, TokenIssuer


@dataclass
class Mail:
    id: str
    mime: bytes
    properties: dict[str, str] = field(default_factory=dict)
    folder: str = "drafts"
    sent_at: float | None = None

    @property
    def parsed(self):
        return message_from_bytes(self.mime, policy=default)


class GraphStandIn(StandIn):
    """`limit` sends per `window` seconds per mailbox (Exchange: 30 per 60 s; scale both for fast tests)."""

    def __init__(self, issuer: TokenIssuer, *, users: dict[str, str] | None = None, limit: int = 30,
                 window: float = 60.0, outbox_delay: float = 0.0):
        super().__init__(issuer=issuer)
        self.outbox_delay = outbox_delay
        self.users = {k.lower(): v for k, v in (users or {}).items()}  # email -> AAD object id
        self.limit = limit
        self.window = window
        self.mails: dict[str, Mail] = {}
        self._recent: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}
        self._mail_lock = threading.Lock()
        self.throttled = 0  # 429s answered
        self.ignored_retry_after = 0  # sends that arrived before the Retry-After they were given had passed
        mb = r"/users/(?P<mb>[^/]+)"
        self.route("POST", mb + r"/messages", "create", self._create)
        self.route("PATCH", mb + r"/messages/(?P<id>[^/]+)", "patch", self._patch)
        self.route("POST", mb + r"/messages/(?P<id>[^/]+)/send", "send", self._send_draft)
        self.route("POST", mb + r"/sendMail", "sendMail", self._send_mail)
        self.route("GET", mb + r"/mailFolders/(?P<folder>[^/]+)/messages", "query", self._query)
        self.route("GET", r"/users/(?P<user>[^/]+)", "user", self._user)

    # --- views for assertions ------------------------------------------------------------------------------
    def sent(self) -> list[Mail]:
        with self._mail_lock:
            self._settle()
            return sorted((m for m in self.mails.values() if m.folder == "sentitems"), key=lambda m: m.sent_at or 0)

    def transmitted(self) -> list[Mail]:
        """Every mail whose send was accepted (in the Outbox or already in Sent Items)."""
        with self._mail_lock:
            return sorted((m for m in self.mails.values() if m.folder in ("outbox", "sentitems")),
                          key=lambda m: m.sent_at or 0)

    def _settle(self) -> None:
        """Outbox → Sent Items once `outbox_delay` has passed (called under the lock by every view)."""
        now = time.time()
        for mail in self.mails.values():
            if mail.folder == "outbox" and mail.sent_at is not None and now >= mail.sent_at + self.outbox_delay:
                mail.folder = "sentitems"

    def drafts(self) -> list[Mail]:
        with self._mail_lock:
            self._settle()
            return [m for m in self.mails.values() if m.folder == "drafts"]

    # --- routes --------------------------------------------------------------------------------------------
    def _create(self, request: Request) -> Response:
        if request.headers.get("Content-Type", "").startswith("text/plain"):
            try:
                mime = base64.b64decode(request.body, validate=True)
            except ValueError:
                return Response(400, {"error": {"code": "ErrorMimeContentInvalidBase64String", "message": "bad"}})
        else:
            return Response(400, {"error": {"code": "RequestBodyRead", "message": "JSON drafts not modelled"}})
        mail = Mail(f"AAMk{uuid.uuid4().hex}", mime)
        with self._mail_lock:
            self.mails[mail.id] = mail
        return Response(201, {"id": mail.id})

    def _patch(self, request: Request) -> Response:
        with self._mail_lock:
            mail = self.mails.get(request.match["id"])
            if mail is None or mail.folder != "drafts":
                return Response(404, {"error": {"code": "ErrorItemNotFound", "message": "not found"}})
            for prop in request.json().get("singleValueExtendedProperties", []):
                mail.properties[prop["id"]] = prop["value"]
        return Response(200, {"id": mail.id})

    def _admit(self, mailbox: str) -> Response | None:
        """The mailbox limit: at most `limit` sends in any `window`; over it, 429 with Retry-After."""
        now = time.time()
        with self._mail_lock:
            if now < self._blocked_until.get(mailbox, 0.0):
                self.ignored_retry_after += 1
            recent = self._recent.setdefault(mailbox, deque())
            while recent and recent[0] <= now - self.window:
                recent.popleft()
            if len(recent) >= self.limit:
                wait = recent[0] + self.window - now
                self._blocked_until[mailbox] = max(self._blocked_until.get(mailbox, 0.0), now + wait)
                self.throttled += 1
                return Response(429, {"error": {"code": "ApplicationThrottled", "message": "MailboxConcurrency"}},
                                {"Retry-After": f"{wait:.3f}"})
            recent.append(now)
        return None

    def _send_draft(self, request: Request) -> Response:
        throttled = self._admit(request.match["mb"].lower())
        if throttled:
            return throttled
        with self._mail_lock:
            mail = self.mails.get(request.match["id"])
            if mail is None or mail.folder != "drafts":
                return Response(404, {"error": {"code": "ErrorItemNotFound", "message": "not found"}})
            mail.folder, mail.sent_at = "outbox", time.time()
            self._settle()
        return Response(202, b"")

    def _send_mail(self, request: Request) -> Response:
        throttled = self._admit(request.match["mb"].lower())
        if throttled:
            return throttled
        mime = base64.b64decode(request.body) if request.headers.get("Content-Type", "").startswith("text/plain") \
            else request.body
        mail = Mail(f"AAMk{uuid.uuid4().hex}", mime, folder="outbox", sent_at=time.time())
        with self._mail_lock:
            self.mails[mail.id] = mail
            self._settle()
        return Response(202, b"")

    _FILTER = re.compile(r"ep/id eq '(?P<id>[^']+)' and ep/value eq '(?P<value>(?:[^']|'')*)'")

    def _query(self, request: Request) -> Response:
        folder = request.match["folder"].lower()
        match = self._FILTER.search(request.query.get("$filter", [""])[0])
        if not match:
            return Response(400, {"error": {"code": "BadRequest", "message": "unsupported filter"}})
        prop, value = match["id"], match["value"].replace("''", "'")
        with self._mail_lock:
            self._settle()
            found = [{"id": m.id} for m in self.mails.values()
                     if m.folder == folder and m.properties.get(prop) == value]
        return Response(200, {"value": found})

    def _user(self, request: Request) -> Response:
        object_id = self.users.get(request.match["user"].lower())
        if object_id is None:
            return Response(404, {"error": {"code": "Request_ResourceNotFound", "message": "no such user"}})
        return Response(200, {"id": object_id})
